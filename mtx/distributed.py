"""Data parallelism under torchrun: process group set-up, agreement on stopping, and who writes.

`torchrun --nproc_per_node N -m mtx train ...` (or `mtx train --gpus N`, which runs it) starts N processes; each
takes its share of every update's batches, DistributedDataParallel averages the gradients, and rank 0 alone
writes checkpoints and logs.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is True on any (a collective: every rank must call it)."""
        if self.size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


def setup(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK); one process: nothing to do."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(device=device), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(size, rank, local, device), device


def launch_command(n_gpus: int, argv: list[str]) -> list[str]:
    """The torchrun command that reruns this `mtx` command line (`argv`, without the program) on `n_gpus`
    processes of this machine; under it, WORLD_SIZE is set and `--gpus` has done its job."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={n_gpus}",
        "-m",
        "mtx",
    ] + argv


def launched() -> bool:
    """Whether this process was started by torchrun."""
    return "WORLD_SIZE" in os.environ


def close(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
