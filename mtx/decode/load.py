"""Loading a translator: a model directory (mtx's own search) or its CTranslate2 export, with the decoding
options a command gives."""

from __future__ import annotations

from pathlib import Path

from mtx import checkpoint
from mtx.config import Config
from mtx.decode.ct2 import CT2Translator, exported_dir
from mtx.decode.export import read_exported
from mtx.decode.translator import BatchTranslator, Translator
from mtx.device import resolve_device
from mtx.errors import UsageError

ENGINES = ("mtx", "ct2")


def load(model_dir: Path, engine: str = "mtx", device: str = "auto", *, workers: int = 1, **decoding,
         ) -> tuple[BatchTranslator, Config]:  # fmt: skip
    """(the translator, the model's config with the given `decoding` options: DecodeConfig's keys, e.g. beam=5,
    sample="topk=10"; None keeps the model's own). `engine`: mtx, or ct2 (CTranslate2, exported into MODEL/ct2
    on first use, or `model_dir` an exported directory); `workers`: batches the engine decodes at once (ct2)."""
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: expected mtx or ct2")
    dev = resolve_device(device)
    if engine == "ct2":
        path = exported_dir(model_dir)
        _, cfg = read_exported(path)
    else:
        model, tokenizer, cfg, _ = checkpoint.load(model_dir, dev)
    d = cfg.decode
    for key, value in decoding.items():
        if not hasattr(d, key):
            raise TypeError(f"load() got an unknown decoding option {key!r}")
        if value is not None:
            setattr(d, key, value)
    if d.beam > 0 and not d.sample:  # a bad --beam is reported as such, not raised to --nbest
        d.beam = max(d.beam, d.nbest)
    cfg.validate("")
    if engine == "ct2":
        return CT2Translator(path, d, dev, workers=workers), cfg
    return Translator(model, tokenizer, d, dev), cfg
