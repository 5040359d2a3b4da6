"""Options against runaway repetitions, applied to each step's logits before the softmax, as CTranslate2 applies
its `repetition_penalty` and `no_repeat_ngram_size` (the same options of its `translate_batch`):

- `no_repeat_ngram` n: a token that would make an n-gram the output already holds is ruled out (1: no token twice);
- `repetition_penalty` p (CTRL, Keskar et al. 2019): the logit of a token the output already holds is divided by p
  where it is positive and multiplied by p where it is negative (p > 1 makes it less likely).

The output so far is a row's tokens after BOS (a forced prefix included). A search's scores are then those of the
changed distribution, not the model's: `mtx score` of such an output gives the model's own."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Repetition:
    no_repeat_ngram: int = 0  # 0: off
    penalty: float = 1.0  # 1: off

    def __bool__(self) -> bool:
        return self.no_repeat_ngram > 0 or self.penalty != 1.0


def apply(logits: torch.Tensor, seqs: torch.Tensor, r: Repetition | None, inplace: bool = False) -> torch.Tensor:
    """`logits` (rows, V) of the next token after each row of `seqs` (rows, 1 + t: BOS, then the output so far),
    changed as `r` says (a new tensor, or with `inplace` `logits` itself where it can; `logits` itself when `r` is
    off)."""
    out = seqs[:, 1:]
    if not r or out.shape[1] == 0:
        return logits
    if r.penalty != 1.0:
        seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, out, True)
        logits = torch.where(seen, torch.where(logits < 0, logits * r.penalty, logits / r.penalty), logits)
    if r.no_repeat_ngram > 0:
        logits = ban(logits, out, r.no_repeat_ngram, inplace and r.penalty == 1.0)
    return logits


def ban(logits: torch.Tensor, out: torch.Tensor, n: int, inplace: bool = False) -> torch.Tensor:
    """`logits` (rows, V) with -inf where a token would complete an n-gram that the row of `out` (rows, t)
    already holds: one that follows an earlier occurrence of the row's last n - 1 tokens. A new tensor, in which
    only the t - n + 1 candidates of each row are written (-inf or + 0), not a (rows, V) mask: at beam 5 on the
    CPU this step cost as much as the log-softmax, before; with `inplace`, `logits` itself, changed."""
    rows, t = out.shape
    if n == 1:  # every token seen so far
        following, hit = out, torch.ones_like(out, dtype=torch.bool)
    elif t < n:  # no n-gram yet
        return logits
    else:  # windows of n - 1 tokens that have a token after them, against each row's last n - 1 tokens
        starts = out[:, : t - 1].unfold(1, n - 1, 1)  # (rows, t - n + 1, n - 1)
        hit = (starts == out[:, None, t - n + 1 :]).all(dim=2)  # (rows, t - n + 1)
        following = out[:, n - 1 :]  # the token after each window
    add = torch.zeros(hit.shape, dtype=logits.dtype, device=logits.device).masked_fill_(hit, float("-inf"))
    return logits.scatter_add_(1, following, add) if inplace else logits.scatter_add(1, following, add)


def banned(out: torch.Tensor, n: int, vocab: int) -> torch.Tensor:
    """(rows, vocab) True where `ban` puts -inf."""
    return torch.isinf(ban(torch.zeros(out.shape[0], vocab, device=out.device), out, n))
