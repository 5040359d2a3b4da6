"""Greedy and batched beam search over a `Transformer`, with a KV cache (or full recompute, the reference).

Beam state is flat `(B * K)` rows, K beams per sentence kept contiguous; candidates come from one `topk`
over `K * V` per sentence; finished hypotheses are merged per sentence on the device, and sentences whose
finished list can no longer be beaten leave the batch.

One score for every beam size (greedy included): the sum of the hypothesis' token log-probabilities, EOS
included, divided by the GNMT length penalty ((5 + n) / 6) ** alpha, n = its tokens with EOS (alpha 0: raw).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtx.model import Transformer
from mtx.tokenizer import BOS, EOS, PAD


def length_penalty(length: int | float, alpha: float) -> float:
    """GNMT length penalty ((5 + len) / 6) ** alpha (Wu et al., 2016)."""
    return ((5.0 + length) / 6.0) ** alpha


def max_lengths(src_mask: torch.Tensor, a: float, b: int, limit: int) -> torch.Tensor:
    """Per-sentence output length limit (in tokens, EOS included): a * src_len + b, at most `limit`."""
    n = src_mask.sum(1).float()
    return (n * a + b).ceil().long().clamp(min=1, max=limit)


class CachedStepper:
    """Next-token logits with the model's KV cache: O(1) new work per position."""

    def __init__(self, model: Transformer, memory, src_mask, beam: int, max_steps: int):
        self.model = model
        self.cache = model.init_cache(memory, src_mask, beam, max_steps)

    def __call__(self, seqs: torch.Tensor, t: int) -> torch.Tensor:
        return self.model.decode_step(seqs[:, -1], self.cache, t)

    def reorder(self, rows: torch.Tensor, sents: torch.Tensor | None) -> None:
        self.cache.reorder(rows, sents)


class FullStepper:
    """Next-token logits by decoding the whole prefix again: the uncached reference for tests and benchmarks."""

    def __init__(self, model: Transformer, memory, src_mask, beam: int, max_steps: int):
        self.model = model
        self.memory = memory.repeat_interleave(beam, dim=0)
        self.mask = src_mask.repeat_interleave(beam, dim=0)

    def __call__(self, seqs: torch.Tensor, t: int) -> torch.Tensor:
        return self.model.decode(seqs, self.memory, self.mask)[:, -1]

    def reorder(self, rows: torch.Tensor, sents: torch.Tensor | None) -> None:
        self.memory = self.memory.index_select(0, rows)
        self.mask = self.mask.index_select(0, rows)


Result = list[tuple[list[int], float]]  # n-best (tokens without EOS, score), best first


@torch.no_grad()
def greedy_search(
    model: Transformer,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    use_cache: bool = True,
    alpha: float = 1.0,
) -> list[Result]:
    """Pick the most likely token at every step; scored as beam search scores (see the module's docstring)."""
    B = src.shape[0]
    memory = model.encode(src, src_mask)
    limits = max_lengths(src_mask, max_len_a, max_len_b, model.config.max_len)
    T = int(limits.max())
    step = (CachedStepper if use_cache else FullStepper)(model, memory, src_mask, 1, T)
    seqs = torch.full((B, 1), BOS, dtype=torch.long, device=src.device)
    scores = torch.zeros(B, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    lengths = torch.zeros(B, device=src.device)  # tokens with EOS
    for t in range(T):
        logp = F.log_softmax(step(seqs, t).float(), dim=-1)
        tok = torch.where(done, PAD, torch.where(t + 1 >= limits, EOS, logp.argmax(dim=-1)))
        best = logp.gather(1, tok[:, None])[:, 0]
        scores = scores + torch.where(done, 0.0, best)
        lengths = lengths + (~done).float()
        seqs = torch.cat([seqs, tok[:, None]], dim=1)
        done = done | (tok == EOS)
        if bool(done.all()):
            break
    scores = scores / lengths.add(5.0).div(6.0).pow(alpha)
    return [[(_strip(row), s)] for row, s in zip(seqs[:, 1:].tolist(), scores.tolist(), strict=True)]


@torch.no_grad()
def beam_search(
    model: Transformer,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    beam: int = 5,
    alpha: float = 1.0,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    nbest: int = 1,
    use_cache: bool = True,
) -> list[Result]:
    """Batched beam search; returns the `nbest` best finished hypotheses per sentence, best first."""
    K, V = beam, model.config.vocab_size
    nbest = min(nbest, K)
    B, dev = src.shape[0], src.device
    memory = model.encode(src, src_mask)
    limits = max_lengths(src_mask, max_len_a, max_len_b, model.config.max_len)  # (B,)
    T = int(limits.max())
    step = (CachedStepper if use_cache else FullStepper)(model, memory, src_mask, K, T)

    neg_inf = float("-inf")
    sent = torch.arange(B, device=dev)  # original index of each live sentence
    scores = torch.full((B, K), neg_inf, device=dev)
    scores[:, 0] = 0.0  # one live beam to start
    seqs = torch.full((B * K, 1), BOS, dtype=torch.long, device=dev)
    fin_scores = torch.full((B, K), neg_inf, device=dev)
    fin_tokens = torch.full((B, K, T), PAD, dtype=torch.long, device=dev)
    offsets = torch.arange(K, device=dev)
    lp_max = limits.float().add(5.0).div(6.0).pow(alpha)  # largest penalty a live beam can reach

    for t in range(T):
        Bl = sent.shape[0]
        logp = F.log_softmax(step(seqs, t).float(), dim=-1).view(Bl, K, V)
        at_limit = (t + 1 >= limits[sent])[:, None, None]  # force EOS at the length limit
        eos_only = torch.full_like(logp, neg_inf)
        eos_only[..., EOS] = 0.0
        logp = torch.where(at_limit, logp + eos_only, logp)
        cand = (scores[:, :, None] + logp).view(Bl, K * V)
        top_s, top_i = cand.topk(2 * K, dim=1)  # (Bl, 2K)
        origin, tok = top_i // V, top_i % V
        is_eos = tok == EOS

        # Finished: EOS among the K best candidates, merged with the sentence's finished list.
        new_fin = torch.where(is_eos[:, :K], top_s[:, :K] / length_penalty(t + 1, alpha), neg_inf)
        prefix = seqs.view(Bl, K, t + 1)[:, :, 1:].gather(1, origin[:, :K, None].expand(Bl, K, t))
        new_tok = torch.full((Bl, K, T), PAD, dtype=torch.long, device=dev)
        new_tok[:, :, :t] = prefix
        new_tok[:, :, t] = EOS
        merged_s, pick = torch.cat([fin_scores[sent], new_fin], dim=1).topk(K, dim=1)
        merged_tok = torch.cat([fin_tokens[sent], new_tok], dim=1).gather(1, pick[:, :, None].expand(Bl, K, T))
        fin_scores[sent] = merged_s
        fin_tokens[sent] = merged_tok

        # Live: the K best candidates that do not end in EOS.
        scores, pick = torch.where(is_eos, neg_inf, top_s).topk(K, dim=1)
        rows = (torch.arange(Bl, device=dev)[:, None] * K + origin.gather(1, pick)).view(-1)
        seqs = torch.cat([seqs.index_select(0, rows), tok.gather(1, pick).view(-1, 1)], dim=1)

        # A sentence is done when no live beam can beat its K-th finished hypothesis, or at its limit.
        best_live = scores[:, 0]
        bound = torch.where(best_live < 0, best_live / lp_max[sent], best_live / length_penalty(t + 2, alpha))
        done = (merged_s[:, K - 1] >= bound) | (t + 1 >= limits[sent]) | torch.isinf(best_live)
        if bool(done.any()):
            keep = (~done).nonzero()[:, 0]
            if keep.numel() == 0:
                break
            sent, scores = sent[keep], scores[keep]
            keep_rows = (keep[:, None] * K + offsets).view(-1)
            seqs = seqs.index_select(0, keep_rows)
            step.reorder(rows.view(Bl, K)[keep].view(-1), keep)
        else:
            step.reorder(rows, None)

    out = []
    for toks, ss in zip(fin_tokens[:, :nbest].tolist(), fin_scores[:, :nbest].tolist(), strict=True):
        out.append([(_strip(x), s) for x, s in zip(toks, ss, strict=True) if s > neg_inf])
    return out


def _strip(tokens: list[int]) -> list[int]:
    return tokens[: tokens.index(EOS)] if EOS in tokens else tokens


def search(
    model: Transformer,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    beam: int,
    alpha: float,
    a: float,
    b: int,
    nbest: int = 1,
    use_cache: bool = True,
) -> list[Result]:
    """Greedy for beam 1 (n-best 1), beam search otherwise."""
    if beam <= 1 and nbest <= 1:
        return greedy_search(model, src, src_mask, a, b, use_cache, alpha)
    return beam_search(model, src, src_mask, beam, alpha, a, b, nbest, use_cache)
