"""Giving back the pages of memory-mapped Arrow files that this process has read, so that a corpus read through a
memory map never counts in its resident set (Linux; elsewhere nothing happens)."""

from __future__ import annotations

import ctypes
import functools
import os

_MADV_DONTNEED = 4


def mapped_regions(files: list[str]) -> list[tuple[int, int]]:
    """(address, length) of this process' read-only mappings of `files` (Linux /proc/self/maps; else none)."""
    wanted = {os.path.realpath(f) for f in files}
    try:
        with open("/proc/self/maps") as f:
            rows = [line.split() for line in f]
    except OSError:
        return []
    regions = []
    for r in rows:
        if len(r) >= 6 and r[1].startswith("r-") and " ".join(r[5:]) in wanted:
            start, end = (int(x, 16) for x in r[0].split("-"))
            regions.append((start, end - start))
    return regions


def release_pages(files: list[str], regions: list[tuple[int, int]] | None = None) -> None:
    """Give back the pages of these memory-mapped files that this process has touched: they leave its resident
    set and stay in the page cache, mapped again on the next touch (a minor fault). Without this, a corpus read
    through a memory map counts in RSS as it is read (the kernel maps 64 KiB around each touched row). Only
    read-only file mappings are affected; elsewhere than Linux, nothing happens."""
    for start, length in mapped_regions(files) if regions is None else regions:
        _libc().madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), _MADV_DONTNEED)


@functools.cache
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def cache_files(ds) -> list[str]:
    return [c["filename"] for c in ds.cache_files]
