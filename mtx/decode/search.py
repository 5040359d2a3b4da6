"""Greedy and batched beam search over any model (`Seq2Seq`), with a KV cache (or full recompute, the reference).

Beam state is flat `(B * K)` rows, K beams per sentence kept contiguous; candidates come from one `topk`
over `K * V` per sentence; finished hypotheses are merged per sentence on the device, and sentences whose
finished list can no longer be beaten leave the batch.

One score for every beam size (greedy and sampling included): the sum of the hypothesis' token log-probabilities,
EOS included, divided by the GNMT length penalty ((5 + n) / 6) ** alpha, n = its tokens with EOS (alpha 0: raw);
`mtx score` gives the same number for a given translation (mtx/decode/scoring.py).

A target prefix (`forced`, per sentence) makes every search start with those tokens: at each of its positions
every other token is ruled out, and the search goes on from there; the prefix's log-probabilities count in the
score, so a forced output scores as it would have scored unforced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mtx.data.tokenizer import BOS, EOS, PAD
from mtx.decode.constraints import Constraints, Guide
from mtx.decode.fastk import best_tokens, top_tokens
from mtx.decode.repetition import Repetition, apply
from mtx.errors import MtxError
from mtx.models.base import Seq2Seq


def length_penalty(length, alpha: float):
    """GNMT length penalty ((5 + len) / 6) ** alpha (Wu et al., 2016), of a number or of a tensor of lengths."""
    return ((5.0 + length) / 6.0) ** alpha


def max_lengths(src_mask: torch.Tensor, a: float, b: int, limit: int, forced: torch.Tensor | None = None):
    """Per-sentence output length limit (in tokens, EOS included): a * src_len + b, at most `limit`; at least one
    more than the sentence's forced prefix."""
    n = src_mask.sum(1).float()
    lim = (n * a + b).ceil().long()
    if forced is not None:
        lim = torch.maximum(lim, (forced != PAD).sum(1) + 1)
    return lim.clamp(min=1, max=limit)


def force(logp: torch.Tensor, forced: torch.Tensor | None, sents: torch.Tensor, t: int,
          model_logp: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """`logp` (rows, V) with every token but the forced one at -inf on the rows whose sentence (`sents`: each
    row's index in `forced`) has a forced token at position t; the others unchanged. The forced token keeps its
    log-probability in `model_logp` where given (the model's, before the repetition rules, which never block a
    forced token), else in `logp`."""
    if forced is None or t >= forced.shape[1]:
        return logp
    want = forced[sents, t]
    on = want != PAD  # no host sync to skip rows without one: the prefix's few steps pay the where
    src = logp if model_logp is None else model_logp
    only = torch.full_like(logp, float("-inf")).scatter_(1, want[:, None], src.gather(1, want[:, None]))
    return torch.where(on[:, None], only, logp)


def next_logp(logits: torch.Tensor, seqs: torch.Tensor, forced: torch.Tensor | None, sents: torch.Tensor, t: int,
              repetition: Repetition | None, own: bool = False) -> torch.Tensor:  # fmt: skip
    """The log-probabilities a search goes by at step t: the model's `logits` (rows, V) changed by the repetition
    rules (on each row's output so far, `seqs`), then the forced prefix's token where there is one. `own`: the
    caller has no further use for `logits`, which the rules may then change in place."""
    logits = logits.float()
    unforced = forced is None or t >= forced.shape[1]
    changed = apply(logits, seqs, repetition, inplace=own and unforced)
    logp = F.log_softmax(changed, dim=-1)
    if unforced or changed is logits:
        return force(logp, forced, sents, t)
    return force(logp, forced, sents, t, F.log_softmax(logits, dim=-1))


@dataclass(frozen=True)
class Sampling:
    """Random sampling instead of search: a token drawn from the `topk` most likely (0: all of them), or from
    the fewest whose probabilities sum to at least `topp` (1: all), after dividing the logits by `temperature`;
    `draws` samples a sentence, the random numbers from `seed` (the same input, settings and seed give the same
    samples)."""

    topk: int = 0
    topp: float = 1.0
    temperature: float = 1.0
    draws: int = 1
    seed: int = 0


def sample_tokens(logp: torch.Tensor, s: Sampling, g: torch.Generator) -> torch.Tensor:
    """One token a row of `logp` (rows, V), drawn as `s` says (a row with one finite value gives that token); never
    PAD or BOS, which no translation holds."""
    logits = logp / s.temperature
    logits[:, PAD] = logits[:, BOS] = float("-inf")
    if s.topk:
        logits, cols = top_tokens(logits, min(s.topk, logits.shape[1]))
    elif s.topp < 1:
        logits, cols = logits.sort(dim=1, descending=True)
        p = logits.softmax(dim=1)
        logits = logits.masked_fill(p.cumsum(dim=1) - p >= s.topp, float("-inf"))  # the first always stays
    else:
        cols = None
    pick = torch.multinomial(logits.softmax(dim=1), 1, generator=g)[:, 0]
    return pick if cols is None else cols.gather(1, pick[:, None])[:, 0]


class CachedStepper:
    """Next-token logits with the model's KV cache: O(1) new work per position."""

    def __init__(self, model: Seq2Seq, memory, src_mask, beam: int, max_steps: int):
        self.model = model
        self.cache = model.init_cache(memory, src_mask, beam, max_steps)

    def __call__(self, seqs: torch.Tensor, t: int) -> torch.Tensor:
        return self.model.decode_step(seqs[:, -1], self.cache, t)

    def reorder(self, rows: torch.Tensor, sents: torch.Tensor | None) -> None:
        self.cache.reorder(rows, sents)


class FullStepper:
    """Next-token logits by decoding the whole prefix again: the uncached reference for tests and benchmarks."""

    def __init__(self, model: Seq2Seq, memory, src_mask, beam: int, max_steps: int):
        self.model = model
        self.memory = memory.repeat_interleave(beam, dim=0)
        self.mask = src_mask.repeat_interleave(beam, dim=0)

    def __call__(self, seqs: torch.Tensor, t: int) -> torch.Tensor:
        return self.model.decode(seqs, self.memory, self.mask)[:, -1]

    def reorder(self, rows: torch.Tensor, sents: torch.Tensor | None) -> None:
        self.memory = self.memory.index_select(0, rows)
        self.mask = self.mask.index_select(0, rows)


Result = list[tuple[list[int], float]]  # n-best (tokens without EOS, score), best first
Done = Callable[[list[int], list[Result]], None]  # (sentences of the batch whose search ended, their results)
Drop = Callable[[], list[int]]  # sentences of the batch no longer wanted: they leave the search at the next step


def _dropped(drop: Drop | None, sent: torch.Tensor) -> torch.Tensor | None:
    """Which live sentences (`sent`: their indices in the batch) `drop` names; None when it names none."""
    gone = drop() if drop is not None else None
    return torch.isin(sent, torch.tensor(gone, device=sent.device)) if gone else None


@torch.inference_mode()
def greedy_search(model: Seq2Seq, src: torch.Tensor, src_mask: torch.Tensor, max_len_a: float = 1.5,
                  max_len_b: int = 10, use_cache: bool = True, alpha: float = 1.0, on_done: Done | None = None,
                  forced: torch.Tensor | None = None, choose: Callable[[torch.Tensor], torch.Tensor] = best_tokens,
                  drop: Drop | None = None, repetition: Repetition | None = None) -> list[Result]:  # fmt: skip
    """Pick the most likely token at every step (or the one `choose` picks from the log-probabilities); scored as
    beam search scores (see the module's docstring). A sentence leaves the batch (and the cache) at its EOS, as
    in beam search, and `on_done` hears of it; one that `drop()` names leaves at once. `forced`: (B, P) target
    prefixes, PAD-padded; `repetition`: rules against repeats (repetition.py)."""
    B, dev = src.shape[0], src.device
    memory = model.encode(src, src_mask)
    limits = max_lengths(src_mask, max_len_a, max_len_b, model.config.max_len, forced)
    T = int(limits.max())
    step = (CachedStepper if use_cache else FullStepper)(model, memory, src_mask, 1, T)
    live = torch.arange(B, device=dev)  # original index of each row still decoding
    seqs = torch.full((B, 1), BOS, dtype=torch.long, device=dev)  # the live rows' prefixes
    out = torch.full((B, T), PAD, dtype=torch.long, device=dev)
    scores = torch.zeros(B, device=dev)
    lengths = torch.zeros(B, device=dev)  # tokens with EOS
    for t in range(T):
        logp = next_logp(step(seqs, t), seqs, forced, live, t, repetition, own=True)
        tok = torch.where(t + 1 >= limits[live], EOS, choose(logp))
        scores[live] += logp.gather(1, tok[:, None])[:, 0]
        out[live, t] = tok
        seqs = torch.cat([seqs, tok[:, None]], dim=1)
        ended = tok == EOS
        gone = _dropped(drop, live)
        if gone is not None:
            ended |= gone
        if bool(ended.any()):
            lengths[live[ended]] = t + 1
            if on_done is not None:
                rows = live[ended]
                final = scores[rows] / length_penalty(lengths[rows], alpha)
                toks = out[rows].tolist()
                on_done(rows.tolist(), [[(_strip(x), s)] for x, s in zip(toks, final.tolist(), strict=True)])
            keep = (~ended).nonzero()[:, 0]
            if keep.numel() == 0:
                break
            live, seqs = live[keep], seqs.index_select(0, keep)
            step.reorder(keep, keep)
    scores = scores / length_penalty(lengths, alpha)
    return [[(_strip(row), s)] for row, s in zip(out.tolist(), scores.tolist(), strict=True)]


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    beam: int = 5,
    alpha: float = 1.0,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    nbest: int = 1,
    use_cache: bool = True,
    stop: str = "current",
    on_done: Done | None = None,
    forced: torch.Tensor | None = None,
    drop: Drop | None = None,
    repetition: Repetition | None = None,
    constraints: Constraints | None = None,
    choose: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[Result]:
    """Batched beam search; returns the `nbest` best finished hypotheses per sentence, best first, and tells
    `on_done` of each sentence as soon as its search ends (one that `drop()` names ends at once, with what it has
    found so far). `forced`: (B, P) target prefixes, PAD-padded; `repetition`: rules against repeats.

    A sentence leaves the batch when its K-th best finished hypothesis scores at least the best live beam's
    score divided by the length penalty of `stop`'s length: "current", the next step's (a live beam is taken
    not to gain from growing longer, as Hugging Face's default and fairseq do); "exact", the longest the live
    beam may reach, so that no hypothesis the beam would find later can beat what is returned (slower: on the
    15-minute de-en model, 22% more decoding steps for the same val outputs; docs/deploy.md).

    `constraints`: token sequences each output must hold (constraints.py): the beam is then at least one more
    than a sentence's constraint tokens, and the length limit leaves room for them. `choose` (with constraints
    only): one free candidate a row, the token it picks from the row's log-probabilities (sampling)."""
    B, dev = src.shape[0], src.device
    limits = max_lengths(src_mask, max_len_a, max_len_b, model.config.max_len, forced)  # (B,)
    guide = None
    if constraints is not None:
        need = constraints.sizes() + (0 if forced is None else (forced != PAD).sum(1))
        if int(need.max()) + 1 > model.config.max_len:
            raise MtxError(f"constraints of {int(need.max())} tokens do not fit the model's {model.config.max_len}")
        beam = max(beam, int(constraints.sizes().max()) + 1)
        limits = torch.maximum(limits, need + 1)
        guide = Guide(constraints, beam)
    K, V = beam, model.config.vocab_size
    nbest = min(nbest, K)
    memory = model.encode(src, src_mask)
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
    C = min(2 * K, V) if choose is None else 1  # free candidates taken from each beam
    lp_max = length_penalty(limits.float(), alpha)  # largest penalty a live beam can reach

    for t in range(T):
        Bl = sent.shape[0]
        # The 2K best candidates of a sentence are among the 2K best tokens of each of its beams: only those
        # are added to the beams' scores (no further (B * K, V) tensor).
        rows_sent = sent.repeat_interleave(K) if forced is not None or guide else sent
        logits = step(seqs, t)
        logp = next_logp(logits, seqs, forced, rows_sent, t, repetition, own=guide is None)  # (Bl * K, V)
        if guide:
            model_lp = force(F.log_softmax(logits.float(), -1), forced, rows_sent, t) if repetition else logp
            logp = guide.close(logp, rows_sent)
        if choose is None:
            row_lp, row_tok = top_tokens(logp, C)  # (Bl * K, C)
        else:
            row_tok = choose(logp)[:, None]
            row_lp = logp.gather(1, row_tok)
        # EOS forced at the length limit: on (Bl * K, C) candidates, cheap enough to do without asking the device
        lim = (t + 1 >= limits[sent]).repeat_interleave(K)[:, None]
        eos_lp = torch.full_like(row_lp, neg_inf)
        eos_lp[:, 0] = logp[:, EOS]
        row_lp = torch.where(lim, eos_lp, row_lp)
        row_tok = torch.where(lim, EOS, row_tok)
        if guide:
            room = (limits[sent] - t - 1).repeat_interleave(K)
            row_lp, row_tok = guide.extend(row_lp, row_tok, model_lp, rows_sent, room)
        N = row_lp.shape[1]
        cand = (scores.view(-1, 1) + row_lp).view(Bl, K * N)
        top_s, top_i = guide.pick(cand, 2 * K) if guide else cand.topk(2 * K, dim=1)  # (Bl, 2K)
        origin, tok = top_i // N, row_tok.view(Bl, K * N).gather(1, top_i)
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
        scores, pick = guide.live(top_s, is_eos) if guide else torch.where(is_eos, neg_inf, top_s).topk(K, dim=1)
        rows = (torch.arange(Bl, device=dev)[:, None] * K + origin.gather(1, pick)).view(-1)
        seqs = torch.cat([seqs.index_select(0, rows), tok.gather(1, pick).view(-1, 1)], dim=1)
        if guide:
            guide.advance(rows, seqs[:, -1], rows_sent)

        # A sentence is done when no live beam can beat its K-th finished hypothesis, or at its limit.
        best_live = scores.amax(1)
        lp_next = length_penalty(t + 2, alpha)
        if stop == "exact":
            bound = torch.where(best_live < 0, best_live / lp_max[sent], best_live / lp_next)
        else:
            bound = best_live / lp_next
        done = (merged_s[:, K - 1] >= bound) | (t + 1 >= limits[sent]) | torch.isinf(best_live)
        gone = _dropped(drop, sent)
        if gone is not None:
            done |= gone
        if bool(done.any()):
            if on_done is not None:
                ended = sent[done]
                on_done(ended.tolist(), _results(fin_tokens[ended, :nbest], fin_scores[ended, :nbest]))
            keep = (~done).nonzero()[:, 0]
            if keep.numel() == 0:
                break
            sent, scores = sent[keep], scores[keep]
            keep_rows = (keep[:, None] * K + offsets).view(-1)
            seqs = seqs.index_select(0, keep_rows)
            step.reorder(rows.view(Bl, K)[keep].view(-1), keep)
            if guide:
                guide.keep(keep_rows)
        else:
            step.reorder(rows, None)

    return _results(fin_tokens[:, :nbest], fin_scores[:, :nbest])


def _results(tokens: torch.Tensor, scores: torch.Tensor) -> list[Result]:
    """Sentences' n-best lists from their finished (tokens, score) rows; empty slots (-inf) left out."""
    out = []
    for toks, ss in zip(tokens.tolist(), scores.tolist(), strict=True):
        out.append([(_strip(x), s) for x, s in zip(toks, ss, strict=True) if s > float("-inf")])
    return out


def _strip(tokens: list[int]) -> list[int]:
    return tokens[: tokens.index(EOS)] if EOS in tokens else tokens


def search(
    model: Seq2Seq,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    beam: int,
    alpha: float,
    a: float,
    b: int,
    nbest: int = 1,
    use_cache: bool = True,
    stop: str = "current",
    on_done: Done | None = None,
    forced: torch.Tensor | None = None,
    sampling: Sampling | None = None,
    drop: Drop | None = None,
    repetition: Repetition | None = None,
    constraints: Constraints | None = None,
) -> list[Result]:
    """Sampling when `sampling` is given; else greedy for beam 1 (n-best 1), beam search otherwise. With
    `constraints`, greedy search is beam search (as wide as beam_search makes it for them)."""
    if sampling is not None:
        return sample_search(model, src, src_mask, sampling, alpha, a, b, use_cache, forced, repetition, constraints)
    if beam <= 1 and nbest <= 1 and constraints is None:
        return greedy_search(model, src, src_mask, a, b, use_cache, alpha, on_done, forced, drop=drop,
                             repetition=repetition)  # fmt: skip
    return beam_search(model, src, src_mask, beam, alpha, a, b, nbest, use_cache, stop, on_done, forced, drop,
                       repetition, constraints)  # fmt: skip


def sample_search(model: Seq2Seq, src: torch.Tensor, src_mask: torch.Tensor, s: Sampling, alpha: float = 1.0,
                  a: float = 1.5, b: int = 10, use_cache: bool = True, forced: torch.Tensor | None = None,
                  repetition: Repetition | None = None,
                  constraints: Constraints | None = None) -> list[Result]:  # fmt: skip
    """`s.draws` samples of each sentence, decoded as one batch (each sentence repeated), best score first. With
    `constraints`, each draw is a beam search whose beams take a sampled token each (beside the constraints'
    tokens): the draw is its best finished hypothesis."""
    n = s.draws
    g = torch.Generator(device=src.device).manual_seed(s.seed)
    rep = None if forced is None else forced.repeat_interleave(n, dim=0)
    src, src_mask = src.repeat_interleave(n, dim=0), src_mask.repeat_interleave(n, dim=0)
    choose = lambda logp: sample_tokens(logp, s, g)  # noqa: E731
    if constraints is not None:
        cons = constraints.rows(torch.arange(len(constraints.tok), device=src.device).repeat_interleave(n))
        out = beam_search(model, src, src_mask, 1, alpha, a, b, 1, use_cache, forced=rep, repetition=repetition,
                          constraints=cons, choose=choose)  # fmt: skip
    else:
        out = greedy_search(model, src, src_mask, a, b, use_cache, alpha, forced=rep, choose=choose,
                            repetition=repetition)  # fmt: skip
    return [sorted((r for (r,) in out[i : i + n]), key=lambda x: -x[1]) for i in range(0, len(out), n)]
