"""Loading a translator: a model directory (mtx's own search) or its CTranslate2 export, with the decoding
options a command gives."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from mtx import checkpoint
from mtx.config import Config
from mtx.data.pairs import pairs_of
from mtx.data.shortlist import SHORTLIST, Shortlist
from mtx.data.tokenizer import Tokenizer
from mtx.decode.confidence import read_calibration
from mtx.decode.ct2 import VMAP, CT2Translator, exported_dir
from mtx.decode.export import read_exported
from mtx.decode.translator import BatchTranslator, Translator
from mtx.device import resolve_device
from mtx.errors import UsageError
from mtx.models.base import Seq2Seq
from mtx.models.ensemble import Ensemble

ENGINES = ("mtx", "ct2")


def load_models(model_dirs: Path | list[Path], dev: torch.device) -> tuple[Seq2Seq, Tokenizer, Config]:
    """(the model, its tokenizer, its config): one model directory, or several as an ensemble (the first one's
    config); an ensemble's models must share the tokenizer and the directions."""
    dirs = model_dirs if isinstance(model_dirs, list) else [model_dirs]
    model, tokenizer, cfg, _ = checkpoint.load(dirs[0], dev)
    if len(dirs) == 1:
        return model, tokenizer, cfg
    models = [model]
    for d in dirs[1:]:
        other, tok, c, _ = checkpoint.load(d, dev)
        if tok.proto != tokenizer.proto:
            raise UsageError(f"--model {d}: its tokenizer is not {dirs[0]}'s; an ensemble's models share one "
                             f"(train them with --tokenizer {dirs[0]})")  # fmt: skip
        if pairs_of(c.data) != pairs_of(cfg.data):
            raise UsageError(f"--model {d}: its directions differ from {dirs[0]}'s")
        models.append(other)
    return Ensemble(models).eval(), tokenizer, cfg


def load(model_dir: Path | list[Path], engine: str = "mtx", device: str = "auto", *, workers: int = 1, **decoding,
         ) -> tuple[BatchTranslator, Config]:  # fmt: skip
    """(the translator, the model's config with the given `decoding` options: DecodeConfig's keys, e.g. beam=5,
    sample="topk=10"; None keeps the model's own). `model_dir`: one, or several (an ensemble; mtx's engine).
    `engine`: mtx, or ct2 (CTranslate2, exported into MODEL/ct2 on first use, or `model_dir` an exported
    directory); `workers`: batches the engine decodes at once (ct2)."""
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: expected mtx or ct2")
    dev = resolve_device(device)
    if isinstance(model_dir, list) and len(model_dir) == 1:
        model_dir = model_dir[0]
    if engine == "ct2":
        if isinstance(model_dir, list):
            raise UsageError("an ensemble (--model given twice) decodes with mtx's engine: leave out --engine ct2")
        path = exported_dir(model_dir)
        _, cfg = read_exported(path)
    else:
        model, tokenizer, cfg = load_models(model_dir, dev)
    for key in decoding:
        if not hasattr(cfg.decode, key):
            raise TypeError(f"load() got an unknown decoding option {key!r}")
    d = dataclasses.replace(cfg.decode, **{k: v for k, v in decoding.items() if v is not None})
    if d.beam > 0 and not d.sample:  # a bad --beam is reported as such, not raised to --nbest
        d = dataclasses.replace(d, beam=max(d.beam, d.nbest))
    cfg.decode = d
    cfg.validate("")
    dirs = model_dir if isinstance(model_dir, list) else [model_dir]
    if engine == "ct2":
        if d.shortlist and not (path / VMAP).is_file():
            raise UsageError(f"--shortlist: {path} has no {VMAP} (the model had no {SHORTLIST} when exported): "
                             f"write one with `mtx shortlist --model {model_dir}`")  # fmt: skip
        translator: BatchTranslator = CT2Translator(path, d, dev, workers=workers)
    else:
        if d.precision == "int8" and dev.type != "cpu":
            raise UsageError("--precision int8 runs on the CPU with mtx's engine (--device cpu), or on CUDA with "
                             "--engine ct2; on CUDA mtx's engine has bf16")  # fmt: skip
        translator = Translator(model, tokenizer, d, dev)
        if d.shortlist:
            translator.shortlist = read_shortlist(dirs, tokenizer)
    translator.calibration = read_calibration(dirs[0])  # an ensemble: its first model's
    return translator, cfg


def read_shortlist(dirs: list[Path], tokenizer: Tokenizer) -> Shortlist:
    """The models' shortlist: an ensemble's models must have the same one."""
    paths = [d / SHORTLIST for d in dirs]
    for p in paths:
        if not p.is_file():
            raise UsageError(f"--shortlist: {p} is missing (a model trained before mtx learnt shortlists): "
                             f"write it with `mtx shortlist --model {p.parent}`")  # fmt: skip
    if len({p.read_bytes() for p in paths}) > 1:
        raise UsageError(f"--shortlist: the ensemble's models have different shortlists ({', '.join(map(str, paths))});"
                         " copy one model's to the others, or leave out --shortlist")  # fmt: skip
    return Shortlist.read(paths[0], tokenizer)
