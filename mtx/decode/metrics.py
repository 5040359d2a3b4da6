"""sacreBLEU and chrF on detokenized, cased text, with their signatures."""

from __future__ import annotations

from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest


@dataclass
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    bleu_text: str


def score(hyps: list[str], refs: list[str]) -> Scores:
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(hyps, [refs])
    c = chrf.corpus_score(hyps, [refs])
    return Scores(b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()), str(b))


def sentence_chrf(hyps: list[str], refs: list[str]) -> list[float]:
    """Each hypothesis' chrF against its reference."""
    chrf = CHRF()
    return [chrf.sentence_score(h, [r]).score for h, r in zip(hyps, refs, strict=True)]


def bleu(hyps: list[str], refs: list[str]) -> float:
    return BLEU().corpus_score(hyps, [refs]).score


def _metrics() -> dict:
    return {"BLEU": BLEU(), "chrF2": CHRF()}


def with_confidence(hyps: list[str], refs: list[str], n_bootstrap: int = 1000) -> dict[str, dict]:
    """BLEU and chrF with sacreBLEU's bootstrap estimate: {metric: {score, mean, ci}} (95% interval: mean ± ci)."""
    out = {}
    for name, metric in _metrics().items():
        s = metric.corpus_score(hyps, [refs], n_bootstrap=n_bootstrap)
        out[name] = {"score": s.score, "mean": s._mean, "ci": s._ci}
    return out


def paired_tests(baseline: list[str], system: list[str], refs: list[str]) -> dict[str, dict]:
    """sacreBLEU's paired bootstrap resampling (1,000 samples: means, 95% intervals, p-value) and paired
    approximate randomisation (10,000 trials: p-value) of `system` against `baseline`, for BLEU and chrF.
    {metric: {"baseline": {score, mean, ci}, "system": {score, mean, ci, p_bs, p_ar}, "signature": ...}}."""
    if baseline == system:
        # sacreBLEU counts resampled differences strictly above the real one, so a zero real difference gets its
        # smallest p-value (1 / (samples + 1)); identical outputs differ in nothing: p = 1.
        ci = with_confidence(baseline, refs)
        return {
            name: {"baseline": c, "system": {**c, "p_bs": 1.0, "p_ar": 1.0}, "signature": "identical outputs"}
            for name, c in ci.items()
        }
    named = [("baseline", baseline), ("system", system)]
    _, bs = PairedTest(named, _metrics(), [refs], test_type="bs")()
    sigs, ar = PairedTest(named, _metrics(), [refs], test_type="ar")()
    out = {}
    for name, sig in sigs.items():  # tables: {metric: [baseline Result, system Result]}
        (b, s), p_ar = bs[name], ar[name][1].p_value
        out[name] = {
            "baseline": {"score": b.score, "mean": b.mean, "ci": b.ci},
            "system": {"score": s.score, "mean": s.mean, "ci": s.ci, "p_bs": s.p_value, "p_ar": p_ar},
            "signature": str(sig),
        }
    return out
