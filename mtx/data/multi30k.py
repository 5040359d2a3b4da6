"""The default corpus, Multi30k: where it is, found from the working directory (`$MTX_DATA`, else
`../shared/data/multi30k`, else `data/multi30k`), and fetching it from the Hugging Face hub where it is missing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mtx.errors import MtxError

log = logging.getLogger(__name__)

SHARED_DATA = Path("..") / "shared" / "data" / "multi30k"  # beside the project, from its root
LOCAL_DATA = Path("data") / "multi30k"  # where `mtx fetch` and `make data` write
HUB_DATASET = "bentrevett/multi30k"  # en/de Multi30k task 1 on the Hugging Face hub
HUB_SPLITS = {"train": "train", "validation": "val", "test": "test_2016_flickr"}
HUB_LANGS = ("de", "en")


def default_data_dir() -> Path:
    """$MTX_DATA, else ../shared/data/multi30k from the working directory if it is there, else data/multi30k."""
    env = os.environ.get("MTX_DATA")
    if env:
        return Path(env)
    shared = SHARED_DATA.resolve()
    return shared if shared.is_dir() else LOCAL_DATA.resolve()


def ensure_data_dir(langs: tuple[str, ...]) -> Path:
    """The default corpus directory; on a machine without it (no $MTX_DATA, no ../shared), Multi30k is fetched
    from the hub into data/multi30k first (the log says so)."""
    found = default_data_dir()
    if found.is_dir() or found != LOCAL_DATA.resolve():  # $MTX_DATA is used as it is (its errors name it)
        return found
    log.info(f"the default corpus is not here: fetching Multi30k from the Hugging Face hub into {found}")
    fetch_multi30k(found, langs)
    return found


def fetch_multi30k(out_dir: Path, langs: tuple[str, ...] = HUB_LANGS) -> list[Path]:
    """Download Multi30k (en/de) from the Hugging Face hub (with progress bars) and write `{split}.{lang}`
    files."""
    import datasets
    import huggingface_hub

    if missing := [x for x in langs if x not in HUB_LANGS]:
        raise MtxError(f"{HUB_DATASET} on the hub has {' and '.join(HUB_LANGS)}, not {', '.join(missing)}: use --data")
    datasets.enable_progress_bars()
    datasets.logging.set_verbosity_error()  # no retry warnings: an error is reported below, in one line
    huggingface_hub.utils.logging.set_verbosity_error()
    try:
        dd = datasets.load_dataset(HUB_DATASET)
    except Exception as e:  # network or hub errors: report them in one line, with what to do
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise MtxError(
            f"cannot download {HUB_DATASET} from the hub ({reason}); offline, put Multi30k's "
            f"{{split}}.{{lang}} files in {out_dir} or point --data or MTX_DATA at them"
        ) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for hub_split, name in HUB_SPLITS.items():
        for lang in langs:
            path = out_dir / f"{name}.{lang}"
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text("".join(s.strip() + "\n" for s in dd[hub_split][lang]), encoding="utf-8")
            tmp.replace(path)
            written.append(path)
    return written
