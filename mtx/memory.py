"""Keeping a long CPU training's resident memory flat.

Measured on Multi30k (docs/data.md): RSS grew by about 2 MB a step with batches of varying shapes and not at
all with one batch repeated. Two things hold memory per shape: oneDNN's primitive cache (1,024 compiled kernels
by default; `ONEDNN_PRIMITIVE_CACHE_CAPACITY`, 64 here unless set) and glibc's free lists, which keep freed
blocks of every size in the process (`malloc_trim` hands them back). Python objects stay constant.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os


def bound_kernel_cache(capacity: int = 64) -> None:
    """Cap oneDNN's per-shape kernel cache (before its first kernel is built; the user's setting wins)."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(capacity))


def trim() -> None:
    """Give freed heap memory back to the system (glibc's `malloc_trim`; elsewhere nothing)."""
    fn = _malloc_trim()
    if fn is not None:
        fn(0)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def rss_mb() -> float | None:
    """This process' resident memory now (Linux), to see in the log whether training grows."""
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError):
        return None


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_arenas(n: int = 2) -> None:
    """At most `n` glibc malloc arenas: threads that allocate and free in turn (a server's decoding threads)
    then share free lists instead of each growing its own heap (glibc's default: 8 per core)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, n)
