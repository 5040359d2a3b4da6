"""A confidence in [0, 1] for each translation, from the model's own scores: the mean log-probability of its
tokens (EOS included), which ranked val's sentences by their chrF best of the features tried (docs/quality.md).

Uncalibrated, the confidence is exp(mean log-probability), the geometric mean of the tokens' probabilities. `mtx
calibrate` fits sigmoid(a · mean + b) to each validation sentence's chrF / 100 (least squares) and keeps a and b in
the model directory (`confidence.json`): then a confidence of 0.6 means a translation that scores about chrF 60."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit
from scipy.special import expit
from scipy.stats import spearmanr

from mtx.errors import MtxError
from mtx.files import atomic_write

FILE = "confidence.json"


def mean_logprob(score: float, tokens: int, alpha: float) -> float:
    """The mean log-probability of a translation of `tokens` tokens (EOS not counted) from its search score (its
    summed log-probability over the length penalty ((5 + n) / 6) ** alpha, n the tokens with EOS)."""
    n = tokens + 1
    return score * ((5.0 + n) / 6.0) ** alpha / n


@dataclass(frozen=True)
class Calibration:
    a: float
    b: float
    split: str = ""  # what it was fitted on
    sentences: int = 0

    def __call__(self, mean: float) -> float:
        return float(expit(self.a * mean + self.b))

    def save(self, model_dir: Path) -> Path:
        path = model_dir / FILE
        atomic_write(path, json.dumps(asdict(self), indent=2).encode())
        return path


def confidence(mean: float, calibration: Calibration | None) -> float:
    """The confidence of a translation whose mean token log-probability is `mean` (-inf: none was found)."""
    if not math.isfinite(mean):
        return 0.0
    return calibration(mean) if calibration is not None else math.exp(min(mean, 0.0))


def read_calibration(model_dir: Path) -> Calibration | None:
    """The model directory's calibration, or None where it has none."""
    path = model_dir / FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Calibration(float(doc["a"]), float(doc["b"]), str(doc.get("split", "")), int(doc.get("sentences", 0)))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise MtxError(f"{path}: not a confidence calibration ({e}); run mtx calibrate again") from None


def fit(means: list[float], quality: list[float], split: str = "") -> Calibration:
    """The sigmoid(a · mean + b) closest to `quality` (each sentence's chrF / 100) in squared error."""
    x, y = np.asarray(means, dtype=float), np.asarray(quality, dtype=float)
    keep = np.isfinite(x)
    x, y = x[keep], y[keep]
    if len(x) < 2:
        raise MtxError("calibration needs at least two translated sentences")
    (a, b), _ = curve_fit(_sigmoid, x, y, p0=(1.0, 0.0), maxfev=10_000)
    return Calibration(float(a), float(b), split, len(x))


def _sigmoid(x: np.ndarray, a: float, b: float) -> np.ndarray:
    return expit(a * x + b)


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation of `x` and `y` (0 where either is constant)."""
    if len(set(x)) < 2 or len(set(y)) < 2:
        return 0.0
    return float(spearmanr(x, y).statistic)


def decile_overlap(conf: list[float], quality: list[float]) -> float:
    """The share of the worst-quality tenth of the sentences that is also in the lowest-confidence tenth."""
    n = max(len(conf) // 10, 1)
    worst = set(np.argsort(np.asarray(quality), kind="stable")[:n].tolist())
    low = set(np.argsort(np.asarray(conf), kind="stable")[:n].tolist())
    return len(worst & low) / n
