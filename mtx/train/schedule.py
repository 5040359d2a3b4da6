"""Learning-rate schedules: pure functions of the step and the fraction of training done."""

from __future__ import annotations

import math


def lr_at(step: int, progress: float, peak: float, warmup: int, kind: str, min_ratio: float) -> float:
    """Linear warmup over `warmup` steps, then decay.

    inv_sqrt: peak * sqrt(warmup / step). cosine / linear: from peak down to peak * min_ratio as
    `progress` (0..1, the fraction of the step or time budget used) goes to 1.
    """
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if kind == "inv_sqrt":
        return peak * math.sqrt(max(warmup, 1) / (step + 1))
    p = min(max(progress, 0.0), 1.0)
    if kind == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * p))
    elif kind == "linear":
        f = 1.0 - p
    elif kind == "constant":
        f = 1.0
    else:
        raise ValueError(f"unknown schedule {kind!r}")
    return peak * (min_ratio + (1.0 - min_ratio) * f)
