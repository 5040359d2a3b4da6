"""`mtx score`: a model's log-probability of given translations (forced decoding), for filtering noisy corpora,
reranking n-best lists and checking data.

A pair's score is what beam search reports for the same output (mtx/decode/search.py): the summed token
log-probabilities of the reference, EOS included, and that sum over the GNMT length penalty
((5 + n) / 6) ** alpha, n = its tokens with EOS. Pairs are scored in length-sorted, token-budget batches, a chunk of
lines at a time, so a corpus of any size streams through.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
import torch.nn.functional as F

from mtx.data import pairs as P
from mtx.data.batching import collate, sorted_batches
from mtx.data.text import check_aligned, lines
from mtx.data.tokenizer import PAD, Tokenizer
from mtx.decode.load import load_models
from mtx.decode.search import length_penalty
from mtx.decode.translator import batch_budget
from mtx.device import autocast, resolve_device
from mtx.models.base import Seq2Seq

log = logging.getLogger(__name__)


@dataclass
class Score:
    logprob: float  # summed token log-probabilities, EOS included
    tokens: int  # target pieces with EOS
    score: float  # logprob / length penalty


@torch.inference_mode()
def score_ids(model: Seq2Seq, src: list[list[int]], tgt: list[list[int]], alpha: float, precision: str = "fp32",
              ) -> list[Score]:  # fmt: skip
    """The scores of one batch: target ids `tgt` (without BOS/EOS) given sources `src` (prefix included)."""
    dev = next(model.parameters()).device
    b = collate(src, tgt).to(dev)
    with autocast(dev, precision):
        logits = model(b.src, b.src_mask, b.tgt_in)
    logp = F.log_softmax(logits.float(), dim=-1).gather(2, b.tgt_out[:, :, None])[:, :, 0]
    real = b.tgt_out != PAD
    sums = logp.masked_fill(~real, 0.0).sum(1)
    n = real.sum(1)
    norm = sums / length_penalty(n.float(), alpha)
    return [Score(s, int(k), x) for s, k, x in zip(sums.tolist(), n.tolist(), norm.tolist(), strict=True)]


def score_lines(
    model: Seq2Seq,
    tok: Tokenizer,
    pairs: Iterable[tuple[str, str]],
    *,
    prefix: list[int] | None = None,
    alpha: float = 1.0,
    batch_tokens: int = 12000,
    precision: str = "fp32",
    chunk: int = 20000,
) -> Iterator[Score]:
    """The score of each (source, translation) pair, in order; `prefix`: ids every source starts with (a
    multi-target model's tag). Sides longer than the model's positions are cut to fit."""
    limit = model.config.max_len - 1
    it = iter(pairs)
    while block := list(islice(it, chunk)):
        src = [((prefix or []) + x)[:limit] for x in tok.encode([s.strip() for s, _ in block])]
        tgt = [y[:limit] for y in tok.encode([t.strip() for _, t in block])]
        out: list[Score | None] = [None] * len(block)
        lengths = [max(len(x) + 1, len(y) + 1) for x, y in zip(src, tgt, strict=True)]
        for idx in sorted_batches(lengths, batch_tokens):
            for i, s in zip(idx, score_ids(model, [src[i] for i in idx], [tgt[i] for i in idx], alpha, precision),
                            strict=True):  # fmt: skip
                out[i] = s
        yield from out  # type: ignore[misc]: every line is scored by now


def score_files(model_dir: Path | list[Path], src_file: Path, ref_file: Path, device: str = "auto", *,
                to: str | None = None, pair: str | None = None, alpha: float | None = None,
                batch_tokens: int | None = None, as_json: bool = False) -> Iterator[str]:  # fmt: skip
    """The output lines of `mtx score`: per line pair of the two files, the normalised score and the summed
    log-probability (tab-separated), or a JSON object with the token count too. Several model directories: their
    ensemble's scores."""
    check_aligned((src_file, ref_file), (sum(1 for _ in lines(src_file)), sum(1 for _ in lines(ref_file))))
    dev = resolve_device(device)
    model, tok, cfg = load_models(model_dir, dev)
    model.eval()
    trained = P.pairs_of(cfg.data)
    src, tgt = P.choose(trained, to, pair, log.warning)
    alpha = cfg.decode.alpha if alpha is None else alpha
    budget = batch_tokens or batch_budget(cfg.decode, dev)
    pairs = zip(lines(src_file), lines(ref_file), strict=True)
    scores = score_lines(model, tok, pairs, prefix=P.prefix_ids(tok, trained, tgt), alpha=alpha,
                         batch_tokens=budget, precision=cfg.decode.precision)  # fmt: skip
    for s in scores:
        if as_json:
            yield json.dumps({"score": round(s.score, 4), "logprob": round(s.logprob, 4), "tokens": s.tokens})
        else:
            yield f"{s.score:.4f}\t{s.logprob:.4f}"
