"""What `mtx train` trains: a new training's settings (a preset for the device and the architecture, under the
user's file and overrides) or a resumed one's, and the corpus they name."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import torch

from mtx.checkpoint import read_config
from mtx.config import Config, ModelConfig, build_config, overrides, resumed_config
from mtx.data import pairs as P
from mtx.data.multi30k import ensure_data_dir
from mtx.data.pairs import languages, pairs_of
from mtx.data.sources import data_spec
from mtx.device import resolve_device
from mtx.errors import UsageError
from mtx.train.state import find_state, load_state

log = logging.getLogger(__name__)


def training_config(
    device: str, file: Path | None, items: list[str] | None, options: dict, resume: Path | None, out: Path
) -> tuple[Config, str]:
    """(the config, the corpus) of `mtx train`: the preset under the file, the `--set` items and the options (a
    dict of `section.key` values, None where not given), or a resumed training's saved config with the changes it
    allows; the corpus the config names, else the default one (fetched where it is missing)."""
    dev = resolve_device(device)
    if options.get("data.pairs") is not None and (options.get("data.src") or options.get("data.tgt")) is not None:
        raise UsageError("--pairs names every direction: leave out --src and --tgt")
    if resume is not None and options.get("train.init") is not None:
        raise UsageError("--init starts a new training from a model; --resume continues one: give one of them")
    items = overrides(items, {"train.device": dev.type} | options)
    if resume is None:
        cfg = configure(file, items, dev.type)
        if cfg.train.init:
            cfg = fine_tuning(Path(cfg.train.init), file, items, out)
    else:
        cfg = resumed_config(load_state(find_state(resume))[0]["config"], file, items, str(resume))
    directions = pairs_of(cfg.data)
    spec = data_spec(None, cfg.data) or ensure_data_dir(tuple(languages(directions)))
    log.info(f"training {', '.join(f'{s}->{t}' for s, t in directions)} on {spec} -> {out}")
    return cfg, str(spec)


def fine_tuning(init: Path, file: Path | None, items: list[str], out: Path) -> Config:
    """A fine-tuning's config (`--init MODEL`): MODEL's saved config (its model, tokenizer and data settings, its
    directions unless others are given) under the file and the overrides, which may not change `model.*`."""
    if out.resolve() == init.resolve():
        raise UsageError(
            f"--init {init}: write the fine-tuned model elsewhere (--out), not over the model it starts from"
        )
    base, meta = read_config(init)
    if any(item.startswith("data.tokenizer=") and item != "data.tokenizer=" for item in items):
        raise UsageError(f"--init {init}: fine-tuning keeps the model's own tokenizer: leave out --tokenizer")
    before = copy.deepcopy(base.model)
    cfg = build_config(file, items, base=base)
    for f in dataclasses.fields(ModelConfig):
        if getattr(cfg.model, f.name) != getattr(before, f.name):
            was, now = getattr(before, f.name), getattr(cfg.model, f.name)
            raise UsageError(
                f"--init {init}: model.{f.name} is {was!r} there and {now!r} here; fine-tuning keeps the model's "
                "architecture (train a new model without --init)"
            )
    if P.tagged(pairs_of(base.data)) and not P.tagged(pairs_of(cfg.data)):
        raise UsageError(f"--init {init}: the model reads target-language tags (several targets); fine-tune it on "
                         "--pairs with at least two targets")  # fmt: skip
    log.info(f"fine-tuning {init} (its step {meta.get('step', '?')}): its weights and tokenizer, a fresh optimizer")
    return cfg


def configure(file: Path | None, overrides: list[str], device_type: str) -> Config:
    """A new training's config: the preset of the device and of the architecture the file or overrides name,
    then the file, then the overrides."""
    cfg = build_config(file, overrides, base=preset(device_type))
    if cfg.model.arch != "transformer":
        cfg = build_config(file, overrides, base=preset(device_type, cfg.model.arch))
    return cfg


def preset(device_type: str, arch: str = "transformer") -> Config:
    """The default settings for a device and architecture: a small fast Transformer on CPU, a larger one on
    CUDA; an RNN for comparison."""
    cfg = Config()
    if arch == "rnn":
        return rnn_preset(cfg, device_type)
    if device_type == "cuda":
        cfg.model = ModelConfig(d_model=512, n_heads=8, enc_layers=6, dec_layers=3, d_ff=2048, dropout=0.3)
        cfg.train.batch_tokens = 12000
        cfg.train.lr = 1.5e-3
        cfg.train.warmup_steps = 400
        cfg.train.time_budget_min = 5.0
        cfg.train.max_epochs = 1000  # an H200 runs 100 epochs of Multi30k in 2.6 minutes: the budget decides
        cfg.train.eval_every = 500
        # Averaging over the second half (why, and the CPU measurement that turned it off there: docs/results.md)
        cfg.train.average = 6
        cfg.train.average_frac = 0.5
    else:
        # Peak lr chosen on val with 15-minute runs (docs/results.md)
        cfg.train.lr = 2e-3
        cfg.train.time_budget_min = 15.0
        cfg.train.amp = "bf16" if _cpu_has_bf16() else "fp32"  # on CPUs with AVX512-BF16/AMX
    return cfg


def rnn_preset(cfg: Config, device_type: str) -> Config:
    """The RNN baseline: chosen on val among the CPU candidates of docs/rnn.md."""
    cfg.model = ModelConfig(arch="rnn", d_model=512, enc_layers=1, dec_layers=1, dropout=0.2)
    cfg.train.lr = 2e-3
    cfg.train.time_budget_min = 15.0 if device_type != "cuda" else 5.0
    cfg.train.amp = "bf16" if device_type == "cuda" or _cpu_has_bf16() else "fp32"
    return cfg


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
