"""What `mtx train` trains: a new training's settings (a preset for the device and the architecture, under the
user's file and overrides) or a resumed one's, and the corpus they name."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from mtx.config import Config, ModelConfig, build_config, overrides, resumed_config
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
    items = overrides(items, {"train.device": dev.type} | options)
    if resume is None:
        cfg = configure(file, items, dev.type)
    else:
        cfg = resumed_config(load_state(find_state(resume))[0]["config"], file, items, str(resume))
    directions = pairs_of(cfg.data)
    spec = data_spec(None, cfg.data) or ensure_data_dir(tuple(languages(directions)))
    log.info(f"training {', '.join(f'{s}->{t}' for s, t in directions)} on {spec} -> {out}")
    return cfg, str(spec)


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
