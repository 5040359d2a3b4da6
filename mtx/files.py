"""Writes that never lose a user's work: every file goes to a temporary name beside its destination, is flushed to
disk, then renamed over it (and the directory flushed), so a reader, or a crash at any moment, sees the old
complete file or the new one; a failed write leaves no temporary file. And the directories mtx may clear."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from mtx.errors import UsageError


def atomic_write(path: Path, data: bytes | Callable[[Path], None]) -> None:
    """Write `data` (bytes, or a function that writes the file it is given) to `path` atomically."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_clearable(path: Path, what: str) -> None:
    """A UsageError unless `path` may be emptied or replaced: never a symbolic link (what it points to would be
    emptied), the working directory or a folder above it."""
    if path.is_symlink():
        raise UsageError(f"{what} {path}: is a symbolic link; name the directory itself")
    here, target = Path.cwd().resolve(), path.resolve()
    if target == here or target in here.parents:
        raise UsageError(f"{what} {path}: is the working directory or holds it; name a directory of its own")
