"""Lexical constraints: token sequences (a glossary's target terms, in pieces) that every output must hold, each
whole and in order, and the bookkeeping that the constrained search (constrained.py) does with them, vectorised
over rows as in Hu et al. (2019):

- a sentence's constraints are laid end to end in one row of positions (`Constraints.tok`, PAD-padded), each
  position knowing where its constraint starts and whether it ends one;
- a hypothesis carries which positions it has met (`met`) and the next position of the constraint it is in the
  middle of (`cur`, -1 for none). A token that goes on with that constraint meets its next position; another
  token abandons it (its positions are met no more) and may start an unmet constraint instead;
- a constraint is a whole word or words: where `joins` (the tokens that go on with the word before them, pieces
  without sentencepiece's leading "▁") is given, none may follow a constraint's last token ("dog" then "s");
- a hypothesis' bank is how many positions it has met: dynamic beam allocation (Post & Vilar, 2018) takes the
  beam's candidates bank by bank, in turns, so that hypotheses on their way through the constraints keep places
  beside the unconstrained best ones (`allocate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtx.data.tokenizer import EOS, PAD


@dataclass
class Constraints:
    tok: torch.Tensor  # (B, L) the sentence's constraints' tokens end to end, PAD after them
    start: torch.Tensor  # (B, L) the position where each position's constraint starts
    end: torch.Tensor  # (B, L) True where a constraint ends
    valid: torch.Tensor  # (B, L) True on the positions that hold a token
    joins: torch.Tensor | None = None  # (V,) True for the tokens that go on with the word before them

    @classmethod
    def build(cls, terms: list[list[list[int]]], device: torch.device | str = "cpu",
              joins: torch.Tensor | None = None) -> Constraints:  # fmt: skip
        """From each sentence's constraints (lists of token ids; empty ones left out)."""
        B = len(terms)
        L = max([sum(len(t) for t in ts) for ts in terms] + [1])
        tok = torch.full((B, L), PAD, dtype=torch.long)
        start = torch.zeros((B, L), dtype=torch.long)
        end = torch.zeros((B, L), dtype=torch.bool)
        for b, ts in enumerate(terms):
            p = 0
            for t in (t for t in ts if t):
                tok[b, p : p + len(t)] = torch.tensor(t)
                start[b, p : p + len(t)] = p
                end[b, p + len(t) - 1] = True
                p += len(t)
        joins = None if joins is None else joins.to(device)
        return cls(tok.to(device), start.to(device), end.to(device), (tok != PAD).to(device), joins)

    def rows(self, idx: torch.Tensor) -> Constraints:
        """The constraints of the sentences `idx` (one per search row)."""
        return Constraints(self.tok[idx], self.start[idx], self.end[idx], self.valid[idx], self.joins)

    def sizes(self) -> torch.Tensor:
        """(B,) how many tokens each sentence's constraints hold."""
        return self.valid.sum(1)


@dataclass
class State:
    met: torch.Tensor  # (rows, L) positions met
    cur: torch.Tensor  # (rows,) the next position of the constraint in progress, -1 for none
    closed: torch.Tensor  # (rows,) whether the last token ended a constraint

    @classmethod
    def empty(cls, rows: int, L: int, device: torch.device | str) -> State:
        met = torch.zeros((rows, L), dtype=torch.bool, device=device)
        return cls(met, torch.full((rows,), -1, device=device), torch.zeros(rows, dtype=torch.bool, device=device))

    def select(self, rows: torch.Tensor) -> State:
        return State(self.met.index_select(0, rows), self.cur.index_select(0, rows), self.closed.index_select(0, rows))

    def unmet(self, c: Constraints) -> torch.Tensor:
        """(rows,) the positions each row has still to meet."""
        return (c.valid & ~self.met).sum(1)


def _progress(s: State, c: Constraints) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row: whether a constraint is in progress, the token that goes on with it, the positions it has met so
    far (`open`, (rows, L)), and the starts of the constraints a new token may begin once it is abandoned."""
    on = s.cur >= 0
    cur = s.cur.clamp(min=0)[:, None]
    want = torch.where(on, c.tok.gather(1, cur)[:, 0], -1)  # -1: no token
    pos = torch.arange(c.tok.shape[1], device=c.tok.device)
    opened = on[:, None] & (c.start == c.start.gather(1, cur)) & (pos < cur)
    free = c.valid & ~(s.met & ~opened) & (c.start == pos)
    return on, want, opened, free


def allowed(s: State, c: Constraints) -> torch.Tensor:
    """(rows, L) the positions whose token makes progress: the next one of the constraint in progress, else the
    first of each unmet constraint."""
    on, _, _, free = _progress(s, c)
    nxt = torch.zeros_like(s.met).scatter_(1, s.cur.clamp(min=0)[:, None], True)
    return torch.where(on[:, None], nxt & c.valid, free)


def counts(s: State, c: Constraints, toks: torch.Tensor) -> torch.Tensor:
    """(rows, N) the number of positions met after each row takes each of its candidate tokens `toks` (rows, N):
    its bank."""
    on, want, opened, free = _progress(s, c)
    n = s.met.sum(1)[:, None]
    go_on = toks == want[:, None]
    begins = ((toks[:, :, None] == c.tok[:, None, :]) & free[:, None, :]).any(2)
    return torch.where(go_on, n + 1, n - opened.sum(1)[:, None] + begins.long())


def advance(s: State, c: Constraints, tok: torch.Tensor) -> State:
    """The state after each row takes its token `tok` (rows,)."""
    on, want, opened, free = _progress(s, c)
    L = c.tok.shape[1]
    pos = torch.arange(L, device=tok.device)
    go_on = on & (tok == want)
    cur = s.cur.clamp(min=0)
    # going on: meet `cur`, then its next position unless it ended the constraint
    met_on = s.met | (go_on[:, None] & (pos == cur[:, None]))
    ends_on = c.end.gather(1, cur[:, None])[:, 0]
    cur_on = torch.where(ends_on, -1, cur + 1)
    # otherwise: the constraint in progress is given up, and the token may begin an unmet one (the first)
    hit = free & (c.tok == tok[:, None])
    begins = hit.any(1)
    first = torch.where(begins, hit.long().argmax(1), 0)
    met_new = (s.met & ~opened) | (begins[:, None] & (pos == first[:, None]))
    ends_new = begins & c.end.gather(1, first[:, None])[:, 0]
    cur_new = torch.where(begins & ~ends_new, first + 1, -1)
    met = torch.where(go_on[:, None], met_on, met_new)
    return State(met, torch.where(go_on, cur_on, cur_new), torch.where(go_on, ends_on, ends_new))


def allocate(scores: torch.Tensor, banks: torch.Tensor, n: int, nb: int | None = None) -> torch.Tensor:
    """Dynamic beam allocation: the indices (B, n) of the candidates to keep of each sentence's `scores` (B, N),
    by turns over the banks (`banks` (B, N): positions met, below `nb`), the fullest bank first: each bank's best,
    then each bank's second best, and so on; a bank with too few candidates leaves its turns to the others.
    Candidates at -inf come last. O(N log N), no host sync when `nb` is given."""
    N = scores.shape[1]
    nb = nb if nb is not None else int(banks.max()) + 1
    order = scores.argsort(dim=1, descending=True, stable=True)
    b = banks.gather(1, order)  # banks, best score first
    by_bank, perm = b.sort(dim=1, stable=True)  # each bank's candidates together, best first
    place = torch.arange(N, device=b.device).expand_as(b) - torch.searchsorted(by_bank, by_bank)
    rank = torch.empty_like(place).scatter_(1, perm, place)  # each candidate's place in its bank
    key = rank * nb + (nb - 1 - b)
    key = key.masked_fill(torch.isinf(scores.gather(1, order)), N * nb)
    return order.gather(1, key.topk(n, dim=1, largest=False).indices)


class Guide:
    """What beam search (search.py) does differently under constraints, for its rows (K a live sentence): no EOS
    before a row has met every position; each row's candidates are its free ones plus a token for each position
    it may make progress on (scored as the model scores it, before the repetition rules and never blocked by
    them); only those where no more room is left than its unmet positions need; and the beam is chosen by
    `allocate`."""

    def __init__(self, cons: Constraints, K: int):
        self.cons, self.K = cons, K
        self.state = State.empty(cons.tok.shape[0] * K, cons.tok.shape[1], cons.tok.device)
        self.banks: torch.Tensor | None = None
        self._rows: tuple[torch.Tensor, Constraints] | None = None

    def rows(self, rsent: torch.Tensor) -> Constraints:
        """The constraints of each row (`rsent`: its sentence), gathered once a step."""
        if self._rows is None or self._rows[0] is not rsent:
            self._rows = (rsent, self.cons.rows(rsent))
        return self._rows[1]

    def close(self, logp: torch.Tensor, rsent: torch.Tensor) -> torch.Tensor:
        """`logp` with EOS at -inf on the rows that have positions left to meet, and the tokens that would go on
        with a word at -inf on the rows whose last token ended a constraint."""
        open_rows = self.state.unmet(self.rows(rsent)) > 0
        logp[:, EOS] = logp[:, EOS].masked_fill(open_rows, float("-inf"))
        if self.cons.joins is not None:
            logp.masked_fill_(self.state.closed[:, None] & self.cons.joins, float("-inf"))
        return logp

    def extend(self, lp: torch.Tensor, tok: torch.Tensor, model_lp: torch.Tensor, rsent: torch.Tensor,
               room: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Each row's free candidates (`lp`, `tok`: (rows, C)) joined by its constraint candidates (rows, C + L);
        `room`: (rows,) tokens each row may still take before its EOS. Keeps their banks for `pick`."""
        c = self.rows(rsent)
        ok = allowed(self.state, c)
        c_lp = model_lp.gather(1, c.tok).masked_fill(~ok, float("-inf"))
        # one candidate a token: a constraint's stands for the same free one, the first of equal starts counts
        lp = lp.masked_fill(((tok[:, :, None] == c.tok[:, None, :]) & ok[:, None, :]).any(2), float("-inf"))
        earlier = torch.ones(c.tok.shape[1], c.tok.shape[1], dtype=torch.bool, device=lp.device).tril(-1)
        twice = ((c.tok[:, :, None] == c.tok[:, None, :]) & ok[:, None, :] & earlier).any(2)
        c_lp = c_lp.masked_fill(twice, float("-inf"))
        unmet = self.state.unmet(c)
        lp = lp.masked_fill(((unmet >= room) & (unmet > 0))[:, None], float("-inf"))
        lp, tok = torch.cat([lp, c_lp], 1), torch.cat([tok, c.tok], 1)
        self.banks = counts(self.state, c, tok)
        return lp, tok

    def pick(self, cand: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The `n` candidates a sentence keeps of `cand` (Bl, K * N) (the rows' candidates of `extend`), in the
        order `allocate` takes them: (scores, indices)."""
        idx = allocate(cand, self.banks.view(cand.shape), n, self.cons.tok.shape[1] + 1)
        return cand.gather(1, idx), idx

    def live(self, top_s: torch.Tensor, is_eos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first K picks that do not end: (scores, their places among the picks)."""
        place = torch.arange(top_s.shape[1], device=top_s.device).expand_as(top_s)
        pick = torch.where(is_eos, top_s.shape[1], place).topk(self.K, dim=1, largest=False).indices
        return top_s.masked_fill(is_eos, float("-inf")).gather(1, pick), pick

    def advance(self, rows: torch.Tensor, tok: torch.Tensor, rsent: torch.Tensor) -> None:
        """The rows now continue rows `rows` of the last step with tokens `tok`; `rsent`: their sentences."""
        self.state = advance(self.state.select(rows), self.rows(rsent), tok)

    def keep(self, rows: torch.Tensor) -> None:
        self.state = self.state.select(rows)
