"""Data parallelism under torchrun: process group set-up, agreement on time and stopping, and who writes.

`torchrun --nproc_per_node N -m mtx train ...` (or `mtx train --gpus N`, which runs it) starts N processes; each
takes its share of every update's batches, DistributedDataParallel averages the gradients. Rank 0 alone trains
the tokenizer (the others receive it), validates, writes checkpoints and logs, and keeps the time: the others
adopt its clock at sync points, so all compute the same learning rate and stop at the same step.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mtx.errors import UsageError, check_positive


@dataclass
class World:
    size: int = 1
    rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def agree(self, elapsed: float, eval_cost: float, flag: bool) -> tuple[float, float, bool]:
        """(rank 0's elapsed seconds, rank 0's validation cost, whether `flag` is True on any rank), the same on
        every rank: one all-reduce (a collective: every rank must call it)."""
        if self.size == 1:
            return elapsed, eval_cost, flag
        mine = [elapsed, eval_cost] if self.main else [0.0, 0.0]
        t = torch.tensor([*mine, 1.0 if flag else 0.0], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)  # a sum: only rank 0 contributes the times
        e, c, f = t.tolist()
        return e, c, f > 0

    def from_main(self, obj):
        """Rank 0's `obj` on every rank (pickled; for small things such as the tokenizer's bytes)."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


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
    return World(size, rank, device), device


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


def relaunch_on_gpus(gpus: int) -> None:
    """`mtx train --gpus N` (N > 1) outside torchrun: run the same command line under torchrun on N GPUs of this
    machine and exit with its code."""
    check_positive(gpus=gpus)
    if gpus <= 1 or launched():
        return
    if (found := torch.cuda.device_count()) < gpus:
        raise UsageError(f"--gpus {gpus}: this machine has {found} CUDA device(s); on CPUs use torchrun directly")
    raise SystemExit(subprocess.run(launch_command(gpus, sys.argv[1:])).returncode)


def launched() -> bool:
    """Whether this process was started by torchrun."""
    return "WORLD_SIZE" in os.environ


def close(world: World) -> None:
    """Leave the process group once every rank is here (a rank that leaves while another still talks to it can
    abort at exit: gloo's threads, "terminate called without an active exception")."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
