"""What benchmarks report besides their own figures: percentiles of timings, peak memory, the device's name."""

from __future__ import annotations

import resource

import torch


def percentile_ms(seconds: list[float], q: float, digits: int = 1) -> float | None:
    """The `q` quantile (the value at rank int(q * n)) of `seconds`, in milliseconds; None without values."""
    values = sorted(seconds)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, digits) if values else None


def peak_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA memory allocated on a GPU, the process' peak resident set on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def name(device: torch.device) -> str:
    """The device as benchmarks report it: the GPU's name, or cpu."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
