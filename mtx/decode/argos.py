"""`mtx export --format argos`: Argos Translate packages (what LibreTranslate loads), one per direction.

A package is a zip of one folder: `metadata.json` (from_code, to_code, names, versions), `model/` (the CTranslate2
model of `mtx export --format ct2`), `sentencepiece.model` (mtx's tokenizer) and a README. On a model with
several targets, mtx's sources start with the target's tag (`<2fr>`): each direction's package makes CTranslate2
add it, as the source's BOS token (`add_source_bos`, `bos_token` = the tag; the decoder still starts from <s>),
so Argos Translate needs no change. Argos decodes with its own settings (beam ARGOS_BEAM_SIZE, 4 unless set;
length penalty 0.2): `mtx translate --engine ct2 --beam 4 --alpha 0.2` gives the same outputs."""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path

from mtx import checkpoint
from mtx.data.pairs import NAMES, pairs_of, tag, tagged
from mtx.decode.export import MTX_JSON, export_ct2
from mtx.errors import UsageError
from mtx.files import atomic_write

ARGOS_VERSION = "1.9"  # the package format's version (metadata.json's argos_version)
SUFFIX = ".argosmodel"


def package_name(src: str, tgt: str) -> str:
    return f"translate-{src}_{tgt}-1_0"


def outputs(pairs: list[tuple[str, str]], out: Path) -> list[tuple[tuple[str, str], Path]]:
    """Each direction of a model and the package file it goes to: OUT itself when it ends in .argosmodel (a
    model of one direction), else OUT/translate-SRC_TGT-1_0.argosmodel."""
    if out.suffix == SUFFIX:
        if len(pairs) > 1:
            raise UsageError(f"{out}: the model has {len(pairs)} directions: give a directory, one package each")
        return [(pairs[0], out)]
    return [(p, out / f"{package_name(*p)}{SUFFIX}") for p in pairs]


def export_argos(model_dir: Path, out: Path, quantize: str | None = None, force: bool = False) -> list[Path]:
    """Write one Argos package per direction of `model_dir` (see `outputs`); the files written."""
    cfg, _ = checkpoint.read_config(model_dir)
    pairs = pairs_of(cfg.data)
    todo = outputs(pairs, out)
    for _, path in todo:
        if path.is_symlink() or out.is_symlink():
            raise UsageError(f"{path}: is a symbolic link; export to the file or directory itself")
        if path.exists() and not force:
            raise UsageError(f"{path}: exists (use --force to replace it)")
        if path.exists() and not path.is_file():
            raise UsageError(f"{path}: not a file; export elsewhere")
    (out if out.suffix != SUFFIX else out.parent).mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="mtx-argos-") as tmp:
        ct2 = export_ct2(model_dir, Path(tmp) / "ct2", quantize)
        for (src, tgt), path in todo:
            root = Path(tmp) / package_name(src, tgt)
            shutil.copytree(ct2, root / "model", ignore=shutil.ignore_patterns(MTX_JSON, checkpoint.TOKENIZER))
            shutil.copyfile(ct2 / checkpoint.TOKENIZER, root / "sentencepiece.model")
            if tagged(pairs):  # the source starts with the target's tag, as mtx's do
                config = json.loads((root / "model" / "config.json").read_text(encoding="utf-8"))
                config.update(add_source_bos=True, bos_token=tag(tgt), decoder_start_token="<s>")
                (root / "model" / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
            meta = {
                "package_version": "1.0",
                "argos_version": ARGOS_VERSION,
                "from_code": src,
                "from_name": NAMES.get(src, src),
                "to_code": tgt,
                "to_name": NAMES.get(tgt, tgt),
                "type": "translate",
                "links": [],
            }
            (root / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            (root / "README.md").write_text(
                f"# {meta['from_name']} to {meta['to_name']}\n\nExported by `mtx export --format argos` from "
                f"{model_dir.name} (mtx decodes it with beam {cfg.decode.beam}, length penalty {cfg.decode.alpha}; "
                f"set ARGOS_BEAM_SIZE={cfg.decode.beam} for the same beam).\n",
                encoding="utf-8",
            )
            atomic_write(path, lambda f, root=root: _zip(root, f))
            written.append(path)
    return written


def _zip(root: Path, path: Path) -> None:
    """`root` as a zip whose one top folder is root's name (what Argos Translate's install_from_path unpacks)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(root.rglob("*")):
            z.write(f, Path(root.name) / f.relative_to(root))
