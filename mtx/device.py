"""Where tensors live and in what precision: the device a command names, autocast."""

from __future__ import annotations

import contextlib

import torch

from mtx.errors import UsageError


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when there is a GPU, else the CPU), `cpu` or `cuda`; a UsageError for anything else, or for
    `cuda` on a machine without one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """Autocast for `precision`: bf16 or fp16; auto: bf16 on CUDA, none on CPU; fp32: none (`Config.validate`
    checks the names of `train.amp` and `decode.precision`)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision in ("fp32", "int8"):  # int8: quantized layers (mtx/models/int8.py), the rest in fp32
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
