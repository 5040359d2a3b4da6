"""Which of the model's own scores ranks a split's sentences by their chrF (docs/quality.md): the Spearman
correlation of each candidate feature with sentence chrF, then how the model's confidence (mtx calibrate's, if it
has one) compares with chrF in five bins.

    python scripts/confidence_features.py MODEL [--split val] [--data DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sacrebleu.metrics import CHRF

from mtx.data.multi30k import ensure_data_dir
from mtx.decode.confidence import decile_overlap, mean_logprob, spearman
from mtx.decode.load import load


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--beam", type=int, default=5)
    a = ap.parse_args()
    data = a.data or ensure_data_dir(("de", "en"))
    src = (data / f"{a.split}.de").read_text(encoding="utf-8").splitlines()
    ref = (data / f"{a.split}.en").read_text(encoding="utf-8").splitlines()
    translator, cfg = load(a.model, beam=a.beam, nbest=a.beam)  # the best is the same as with nbest 1
    trs = translator.translate(src)
    chrf = CHRF()
    quality = [chrf.sentence_score(t.text, [r]).score for t, r in zip(trs, ref, strict=True)]
    features = {
        "mean token log-probability (the confidence)": [
            mean_logprob(t.nbest[0][1], len(t.tokens), cfg.decode.alpha) for t in trs
        ],
        "search score (length-penalised)": [t.nbest[0][1] for t in trs],
        "n-best gap (best - second score)": [t.nbest[0][1] - t.nbest[1][1] for t in trs],
        "n-best agreement (mean chrF of the others to the best)": [
            float(np.mean([chrf.sentence_score(h, [t.text]).score for h, _ in t.nbest[1:] if h] or [0.0])) for t in trs
        ],
        "source words (fewer: surer)": [-len(s.split()) for s in src],
    }
    print(f"{a.split}: {len(src)} sentences, beam {a.beam}, mean chrF {np.mean(quality):.1f}")
    for name, values in features.items():
        print(f"  Spearman {spearman(values, quality):+.3f}  {name}")
    conf = [t.confidence for t in trs]
    print(f"confidence: Spearman {spearman(conf, quality):.3f}, worst-chrF tenth in the lowest-confidence tenth "
          f"{100 * decile_overlap(conf, quality):.0f}%, below 0.5: {100 * np.mean(np.array(conf) < 0.5):.0f}%")  # fmt: skip
    print("  confidence bin   sentences  mean confidence  mean chrF / 100")
    edges = [0.0, 0.3, 0.5, 0.7, 0.85, 1.01]
    c, q = np.array(conf), np.array(quality) / 100
    for lo, hi in zip(edges, edges[1:], strict=False):
        at = (c >= lo) & (c < hi)
        if at.any():
            print(f"  [{lo:.2f}, {min(hi, 1):.2f})   {at.sum():>9}  {c[at].mean():>15.3f}  {q[at].mean():>15.3f}")


if __name__ == "__main__":
    main()
