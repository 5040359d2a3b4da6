"""Weight averaging over the end of training.

Snapshots of the parameters are taken at evenly spaced points of the last `frac` of training (by the same
progress fraction that drives the learning-rate schedule: time budget, step limit or epochs) and kept as a
running mean in one fp32 copy on the device; the final weights are added when training ends. This is the
in-memory form of averaging the last N checkpoints: nothing extra is written until the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class WeightAverage:
    """`snapshots` >= 0 and `frac` in (0, 1] (`Config.validate` checks train.average and train.average_frac)."""

    def __init__(self, model: torch.nn.Module, snapshots: int, frac: float):
        self.params = [p for p in model.parameters() if p.dtype.is_floating_point]
        self.snapshots, self.frac = snapshots, frac
        self.mean: list[torch.Tensor] | None = None
        self.count = 0
        self.last_step = -1
        self.final = False  # the final weights of a finished run are in the mean

    def due(self, progress: float) -> bool:
        """Whether the next snapshot is due: snapshot k (0-based, k < snapshots) at progress 1 - frac + k*frac/N."""
        k = self.count
        return k < self.snapshots and progress >= 1.0 - self.frac + k * self.frac / self.snapshots

    @torch.no_grad()
    def add(self, step: int) -> None:
        """Fold the current parameters into the running mean (no host sync)."""
        current = [p.detach().float() for p in self.params]
        if self.mean is None:
            self.mean = [p.clone() for p in current]
            self.count = 1
        else:
            self.count += 1
            torch._foreach_lerp_(self.mean, current, 1.0 / self.count)
        self.last_step = step

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights; its own weights come back afterwards."""
        assert self.mean is not None, "no snapshot taken"
        with torch.no_grad():
            saved = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.mean)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, saved)

    def add_final(self, step: int) -> None:
        """Add the weights training ended with (unless just added)."""
        if self.last_step != step:
            self.add(step)
        self.final = True

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """(JSON-able info, tensors) for a resumable training state."""
        info = {"avg_count": self.count, "avg_last_step": self.last_step, "avg_final": self.final}
        tensors = {} if self.mean is None else {f"avg.{i}": m.to("cpu") for i, m in enumerate(self.mean)}
        return info, tensors

    def restore(self, info: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Continue an interrupted run's average; a finished run resumed to train longer starts a new one (its
        snapshots belong to the old schedule's end)."""
        if info.get("avg_final"):
            return
        self.count, self.last_step = info.get("avg_count", 0), info.get("avg_last_step", -1)
        if self.count:
            device = self.params[0].device
            self.mean = [tensors[f"avg.{i}"].to(device) for i in range(len(self.params))]
