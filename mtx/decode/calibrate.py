"""`mtx calibrate`: decode the validation split, fit the confidence's map to each sentence's chrF
(confidence.py), keep it in the model directory, and say how well the confidence ranks the sentences."""

from __future__ import annotations

from pathlib import Path

from mtx import checkpoint
from mtx.decode.confidence import Calibration, decile_overlap, fit, spearman
from mtx.decode.evaluate import evaluate
from mtx.errors import UsageError


def calibrate(model: Path, device: str = "auto", decoding: dict | None = None, *, data: str | None = None,
              split: str | None = None) -> tuple[Calibration, Path, dict]:  # fmt: skip
    """Fit `model`'s confidence on its validation split (or `split`, never the test split) with its decoding
    settings (`decoding`: options of `load`); every pair of a model of several, pooled. Returns the
    calibration, where it was written, and {sentences, spearman, worst_decile, mean_confidence, mean_chrf}
    measured on that split with the new calibration."""
    cfg, _ = checkpoint.read_config(model)
    split = split or cfg.data.valid_split
    if split == cfg.data.test_split:
        raise UsageError(f"--split {split}: the model's test split; calibrate on the validation split")
    report = evaluate(model, "mtx", device, decoding, data=data, split=split)
    means = [m for r in report.rows for m in r["means"]]
    chrfs = [c for r in report.rows for c in r["sentence_chrf"]]
    cal = fit(means, [c / 100 for c in chrfs], split)
    conf = [cal(m) for m in means]
    figures = {
        "sentences": len(means),
        "spearman": round(spearman(conf, chrfs), 3),
        "worst_decile": round(decile_overlap(conf, chrfs), 3),
        "mean_confidence": round(sum(conf) / len(conf), 4),
        "mean_chrf": round(sum(chrfs) / len(chrfs) / 100, 4),
    }
    return cal, cal.save(model), figures
