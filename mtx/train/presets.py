"""The settings a new training starts from: a preset for the device and the architecture, under the user's file
and overrides."""

from __future__ import annotations

from pathlib import Path

import torch

from mtx.config import Config, ModelConfig, build_config


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
