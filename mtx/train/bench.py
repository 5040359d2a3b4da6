"""`mtx bench train`: training throughput of a preset (or a config) on real batches, one JSON object; a benchmark,
never used as a test."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from mtx import measure
from mtx.config import Config, overrides
from mtx.console import quiet
from mtx.data.multi30k import default_data_dir
from mtx.data.prepare import prepare_data
from mtx.device import resolve_device
from mtx.errors import check_positive
from mtx.measure import percentile_ms
from mtx.models.base import build_model
from mtx.train.presets import configure
from mtx.train.step import compiled, make_optimizer, train_step


def bench(data: Path | None, device: str, batch_tokens: int | None, steps: int, warmup: int | None, config: Path | None,
          items: list[str] | None, peak_tflops: float | None, compile_: bool) -> dict:  # fmt: skip
    """`mtx bench train`: `train_throughput` of the device's preset under the config file, the `--set` items and
    the options, on `data` (default: the default corpus); MFU against `peak_tflops` (on CUDA, by default the bf16
    dense peak of an H100/H200 SXM). `warmup` None: 10 steps on a CPU; on CUDA one epoch (at most 500 steps),
    every batch shape once, since a shape's first step costs far more there (an H200's first 50 training steps
    ran at 85k tokens/s, the rest at 680k: docs/gpu.md)."""
    check_positive(steps=steps)
    if warmup is not None:
        check_positive(zero_ok=True, warmup=warmup)
    dev = resolve_device(device)
    flags = {"train.device": dev.type, "train.batch_tokens": batch_tokens, "train.compile": compile_ or None}
    cfg = configure(config, overrides(items, flags), dev.type)
    peak = peak_tflops or (989.0 if dev.type == "cuda" else None)
    return train_throughput(cfg, data or default_data_dir(), dev, steps, warmup, peak)


def _train_flops(model, src_mask: torch.Tensor, tgt_len: int, n_tgt_rows: int) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3x forward), padded positions included.

    Linear layers: 2 * params per token they process; attention: 2 * 2 * d per query-key pair."""
    c = model.config
    B, S = src_mask.shape
    T = tgt_len
    if c.arch == "rnn":  # every matrix once per token on its side; attention 2 * 2 * d per query-key pair
        enc = sum(p.numel() for p in model.encoder.parameters() if p.dim() == 2)
        dec = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n) - enc
        linear = 2 * (B * S * (enc + c.d_model**2) + n_tgt_rows * T * (dec - c.d_model**2 + c.vocab_size * c.d_model))
        return 3.0 * (linear + 4 * c.d_model * B * T * S)
    enc = sum(p.numel() for n, p in model.encoder.named_parameters() if p.dim() == 2)
    cross_kv = sum(layer.cross_attn.kv.weight.numel() for layer in model.decoder)
    dec = sum(p.numel() for n, p in model.decoder.named_parameters() if p.dim() == 2) - cross_kv
    out = c.vocab_size * c.d_model
    linear = 2 * (B * S * (enc + cross_kv) + n_tgt_rows * T * (dec + out))
    attn = 4 * c.d_model * B * (c.enc_layers * S * S + c.dec_layers * (T * T + T * S))
    return 3.0 * (linear + attn)


def train_throughput(
    cfg: Config, data_dir: Path, device: torch.device, steps: int, warmup: int | None, peak_tflops: float | None
):
    """Time `steps` training steps (after `warmup`; None: 10, on CUDA the epoch's batches) on real batches; return
    throughput, step-time percentiles, padding, peak memory and model FLOPs utilisation against `peak_tflops`."""
    with quiet():  # the figures only
        data = prepare_data(cfg, data_dir)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model).to(device).train()
    opt = make_optimizer(model, cfg.train)
    stepper = compiled(model) if cfg.train.compile else model
    batches = data.train.epoch(0)
    cuda = device.type == "cuda"
    if warmup is None:  # an epoch, but bounded: a large corpus's epoch would be the whole benchmark
        warmup = min(len(batches), 500) if cuda else 10
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    marks, real, padded, flops = [], 0, 0, 0.0
    t0 = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            if cuda:
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        b = data.train.collate(batches[i % len(batches)])
        n_tgt = b.n_tgt_tokens
        if i >= warmup:
            real += int(b.src_mask.sum()) + n_tgt
            padded += b.src.numel() + b.tgt_out.numel()
            flops += _train_flops(model, b.src_mask, b.tgt_in.shape[1], b.tgt_in.shape[0])
        if cuda:
            b = b.pin_memory().to(device, non_blocking=True)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            train_step(stepper, opt, [b], 1.0 / n_tgt, cfg.train, device)
            end.record()
            marks.append((start, end))
        else:
            s = time.perf_counter()
            train_step(stepper, opt, [b], 1.0 / n_tgt, cfg.train, device)
            marks.append(time.perf_counter() - s)
    if cuda:
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - t0
    # seconds per step (GPU time between the step's first and last kernel on CUDA)
    times = [(m[0].elapsed_time(m[1]) / 1000 if cuda else m) for m in marks[warmup:]]

    achieved = flops / wall / 1e12
    return {
        "device": measure.name(device),
        "warmup": warmup,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "batch_tokens": cfg.train.batch_tokens,
        "amp": cfg.train.amp,
        "compile": cfg.train.compile,
        "steps": steps,
        "tokens": real,
        "tokens_per_s": round(real / wall, 1),  # real source + target tokens
        "steps_per_s": round(steps / wall, 2),
        **{f"step_ms_p{round(q * 100)}": percentile_ms(times, q, 2) for q in (0.5, 0.9, 0.99)},
        "padding_fraction": round(1 - real / padded, 4),
        "peak_mem_mb": round(measure.peak_mb(device), 1),
        "model_tflops_per_s": round(achieved, 2),
        "peak_tflops": peak_tflops,
        "mfu": round(achieved / peak_tflops, 4) if peak_tflops else None,
    }
