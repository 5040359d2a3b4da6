"""Whether the CPU's BLAS runs near the hardware's speed: some VMs mask CPUID (a 2-core "AMD EPYC" showing AVX2
only), and torch's MKL then takes its generic path, several times slower, and a time budget buys a fraction of
the steps the README's figures were measured with. `mtx train` measures a matmul at the start and says so.

The peak is a floor, from /proc/cpuinfo: threads x clock x fp32 FLOPs a cycle of one FMA unit of the widest
vector the flags show (AVX-512: 32, AVX2 with FMA: 16, else 8); machines with two FMA units reach twice that.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import torch

SLOW = 0.35  # measured below this share of the floor: say so


def matmul_gflops(n: int = 512, seconds: float = 0.3) -> float:
    """fp32 GFLOPS of an n x n matmul on the CPU with torch's threads, the best of repeated runs for `seconds`."""
    g = torch.Generator().manual_seed(0)  # not the global one: training's random streams stay as they were
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    torch.mm(a, b)
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def peak_floor(threads: int, cpuinfo: str | None = None) -> float | None:
    """The lowest fp32 GFLOPS `threads` cores of this CPU should reach (see the module), or None where
    /proc/cpuinfo does not tell the clock or the flags."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)
    flags = re.search(r"^flags\s*:(.*)$", cpuinfo, re.M)
    if not mhz or not flags:
        return None
    have = set(flags.group(1).split())
    per_cycle = 32 if "avx512f" in have else 16 if {"avx2", "fma"} <= have else 8
    return threads * float(mhz.group(1)) / 1000 * per_cycle


def blas_warning(threads: int | None = None) -> str | None:
    """A warning line when the BLAS runs far below the CPU's floor; None when it does not (or cannot tell)."""
    threads = threads or torch.get_num_threads()
    floor = peak_floor(threads)
    if floor is None:
        return None
    got = matmul_gflops()
    if got >= SLOW * floor:
        return None
    return (f"warning: a 512x512 fp32 matmul runs at {got:.0f} GFLOPS on {threads} threads, under "
            f"{100 * SLOW:.0f}% of the {floor:.0f} these cores reach at least: torch's BLAS is likely on a generic "
            "path (a VM that masks CPUID?); training will make far fewer steps than docs/results.md's "
            "(docs/performance.md)")  # fmt: skip
