"""Parallel text files: find the default data directory (or fetch Multi30k), and read and check a small
line-aligned pair of files (a test set): a missing file, invalid UTF-8, an empty line or mismatched line counts
each raise `MtxError` naming the file and line. Training corpora of every kind are read by mtx/sources.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mtx.errors import MtxError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "multi30k"
LOCAL_DATA = PROJECT_ROOT / "data" / "multi30k"
HUB_DATASET = "bentrevett/multi30k"  # en/de Multi30k task 1 on the Hugging Face hub
HUB_SPLITS = {"train": "train", "validation": "val", "test": "test_2016_flickr"}
HUB_LANGS = ("de", "en")


def default_data_dir() -> Path:
    """$MTX_DATA, else ../shared/data/multi30k beside the project, else data/multi30k (see `make data`)."""
    env = os.environ.get("MTX_DATA")
    if env:
        return Path(env)
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    return LOCAL_DATA


def ensure_data_dir(data: Path | None, langs: tuple[str, ...], log) -> Path:
    """`data`, or the default corpus directory; on a machine without it (no $MTX_DATA, no ../shared),
    Multi30k is fetched from the hub into data/multi30k first (`log` says so)."""
    if data is not None or os.environ.get("MTX_DATA") or default_data_dir().is_dir():
        return data or default_data_dir()
    log(f"the default corpus is not here: fetching Multi30k from the Hugging Face hub into {LOCAL_DATA}")
    fetch_multi30k(LOCAL_DATA, langs)
    return LOCAL_DATA


def read_lines(path: Path) -> list[str]:
    """Read a UTF-8 text file as lines (without line ends); invalid UTF-8 names the line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MtxError(f"{path}: file not found") from None
    except OSError as e:
        raise MtxError(f"{path}: cannot read ({e.strerror})") from None
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for i, line in enumerate(lines, 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MtxError(f"{path}:{i}: invalid UTF-8 at byte {e.start}") from None
        out.append(text.removesuffix("\r"))
    return out


def check_parallel(src_path: Path, tgt_path: Path) -> int:
    """Validate a line-aligned pair of files; return the number of lines."""
    src = read_lines(src_path)
    tgt = read_lines(tgt_path)
    if len(src) != len(tgt):
        n = min(len(src), len(tgt))
        longer = src_path if len(src) > len(tgt) else tgt_path
        raise MtxError(
            f"{longer}:{n + 1}: files are not aligned ({src_path.name} has {len(src)} lines, "
            f"{tgt_path.name} has {len(tgt)})"
        )
    if not src:
        raise MtxError(f"{src_path}: file is empty")
    for path, lines in ((src_path, src), (tgt_path, tgt)):
        for i, line in enumerate(lines, 1):
            if "\r" in line:
                raise MtxError(f"{path}:{i}: carriage return inside a line")
            if not line.strip():
                raise MtxError(f"{path}:{i}: empty line in a parallel corpus")
    return len(src)


@dataclass
class Split:
    """A validated parallel split: `src` and `tgt` are lists of sentences."""

    name: str
    src: list[str]
    tgt: list[str]


def split_paths(data_dir: Path, split: str, src: str, tgt: str) -> tuple[Path, Path]:
    return data_dir / f"{split}.{src}", data_dir / f"{split}.{tgt}"


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
