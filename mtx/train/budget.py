"""When training stops and how far along it is: a time budget, a step limit or `max_epochs`.

The time budget counts training from the first step (steps, validations, saves) over all runs of a resumed
training; reading data and training the tokenizer come before it. Near its end, time is kept in reserve for
the final validations and save. The clock is injected, so tests drive it.

Under torchrun every rank must use the same progress (it sets the learning rate and the averaging snapshots)
and stop at the same step. So progress is a function of the step and of values all ranks agreed on at the last
sync point (rank 0's clock): between sync points it is extrapolated by the agreed seconds per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Budget:
    def __init__(
        self,
        minutes: float,
        max_steps: int,
        max_epochs: int,
        clock: Callable[[], float] = time.monotonic,
        spent: float = 0.0,
        final_evals: int = 1,
    ):
        """`spent`: seconds of training already done (a resumed run); `final_evals`: validations run after the
        last step (the weights, and the weight average if there is one)."""
        self.seconds, self.max_steps, self.max_epochs = minutes * 60.0, max_steps, max_epochs
        self.clock = clock
        self.t0 = clock() - spent
        self.final_evals = final_evals
        # Until a validation has been timed, guess its cost as 5% of the budget (at most a minute).
        self.eval_cost = min(0.05 * self.seconds, 60.0)
        self.synced_step, self.synced_elapsed, self.step_s = 0, spent, 0.0
        self.last_progress = 0.0

    def elapsed(self) -> float:
        """Seconds of training by this process's clock."""
        return self.clock() - self.t0

    def reserve(self) -> float:
        """Seconds kept for the final validations and save (at most half the budget)."""
        return min(self.final_evals * self.eval_cost + 2.0, 0.5 * self.seconds)

    def sync(self, step: int, elapsed: float, eval_cost: float | None = None) -> None:
        """Adopt agreed values at a sync point: `elapsed` seconds of training at `step` (and the last validation's
        cost). Seconds per step since the previous sync drive the extrapolation until the next."""
        if step > self.synced_step:
            self.step_s = (elapsed - self.synced_elapsed) / (step - self.synced_step)
        self.synced_step, self.synced_elapsed = step, elapsed
        if eval_cost is not None:
            self.eval_cost = eval_cost

    def time_up(self) -> bool:
        """At the last sync point, the time left was no more than the reserve."""
        return self.seconds > 0 and self.seconds - self.synced_elapsed <= self.reserve()

    def steps_done(self, step: int) -> bool:
        return self.max_steps > 0 and step >= self.max_steps

    def progress(self, step: int, epochs_done: float) -> float:
        """Fraction of training done (0..1, never decreasing): of the time budget (up to the reserve) or the step
        limit, whichever is further; with neither, of `max_epochs`."""
        if self.seconds <= 0 and not self.max_steps:
            frac = epochs_done / self.max_epochs
        else:
            frac = step / self.max_steps if self.max_steps else 0.0
            if self.seconds > 0:
                expected = self.synced_elapsed + (step - self.synced_step) * self.step_s
                frac = max(frac, expected / (self.seconds - self.reserve()))
        self.last_progress = min(max(frac, self.last_progress), 1.0)
        return self.last_progress

    def left(self) -> float:
        """Seconds of the budget left by this process's clock (inf without a budget): for the status line."""
        return float("inf") if self.seconds <= 0 else self.seconds - self.elapsed()
