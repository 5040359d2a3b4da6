"""sacreBLEU and chrF on detokenized, cased text, with their signatures."""

from __future__ import annotations

from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF


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


def bleu(hyps: list[str], refs: list[str]) -> float:
    return BLEU().corpus_score(hyps, [refs]).score
