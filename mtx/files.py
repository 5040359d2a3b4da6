"""Crash-safe writes: every file goes to a temporary name beside its destination, is flushed to disk, then
renamed over it, so a reader (or a crash at any moment) sees the old complete file or the new one."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file


def atomic_write(path: Path, data: bytes | Callable[[Path], None]) -> None:
    """Write `data` (bytes, or a function that writes the file it is given) to `path` atomically."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if callable(data):
        data(tmp)
    else:
        tmp.write_bytes(data)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
