"""Length-bucketed, token-budget batches with boolean padding masks (True = real token).

Source ids end in EOS; the target is split into decoder input (BOS + y) and output (y + EOS),
shifted by one. Masks are built here, once, and nowhere else.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

import numpy as np
import torch

from mtx.tokenizer import BOS, EOS, PAD, UNK


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) long
    src_mask: torch.Tensor  # (B, S) bool, True = token
    tgt_in: torch.Tensor | None = None  # (B, T) long: BOS y1 .. yn
    tgt_out: torch.Tensor | None = None  # (B, T) long: y1 .. yn EOS (PAD beyond)

    @property
    def n_tgt_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum()) if self.tgt_out is not None else 0

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def mv(t):
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return Batch(mv(self.src), mv(self.src_mask), mv(self.tgt_in), mv(self.tgt_out))

    def pin_memory(self) -> Batch:
        def pin(t):
            return None if t is None else t.pin_memory()

        return Batch(pin(self.src), pin(self.src_mask), pin(self.tgt_in), pin(self.tgt_out))


def drop_tokens(ids: torch.Tensor, p: float) -> torch.Tensor:
    """Token dropout, a regulariser for small corpora: each ordinary piece becomes UNK with probability `p`;
    PAD, BOS and EOS stay, so masks and lengths do not change. Drawn on the ids' device (no host sync);
    `p` = 0 returns `ids` itself and draws nothing."""
    if p <= 0:
        return ids
    hit = (torch.rand(ids.shape, device=ids.device) < p) & (ids > EOS)
    return ids.masked_fill(hit, UNK)


def pad(seqs: list[list[int]], length: int | None = None) -> torch.Tensor:
    length = length or max(len(s) for s in seqs)
    return torch.tensor([s + [PAD] * (length - len(s)) for s in seqs], dtype=torch.long)


def collate(src: list[list[int]], tgt: list[list[int]] | None = None) -> Batch:
    """Build a padded batch; `src` and `tgt` are id lists without special tokens."""
    s = pad([x + [EOS] for x in src])
    batch = Batch(src=s, src_mask=s != PAD)
    if tgt is not None:
        batch.tgt_in = pad([[BOS] + y for y in tgt])
        batch.tgt_out = pad([y + [EOS] for y in tgt])
    return batch


def bucket(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Group indices, in the given order, so that n_sents * max_len <= batch_tokens (a longer sentence alone)."""
    batches, cur, cur_max = [], [], 0
    for i in range(len(lengths)):
        new_max = max(cur_max, lengths[i])
        if cur and new_max * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur, new_max = [], lengths[i]
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    return batches


def bucket_ascending(lengths: list[int], batch_tokens: int) -> list[tuple[int, int]]:
    """`bucket` for ascending lengths, as (start, end) ranges: n * max_len of [start, end) grows with end, so
    each batch's end is found by bisection instead of a step per sentence."""
    ranges, start = [], 0
    while start < len(lengths):
        fits = range(start + 1, len(lengths) + 1)
        end = bisect.bisect_right(fits, batch_tokens, key=lambda e: lengths[e - 1] * (e - start))
        end = start + max(end, 1)  # a single over-long pair still makes a batch
        ranges.append((start, end))
        start = end
    return ranges


def sorted_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Batches of original indices over the inputs sorted by length (longest first); the caller puts the
    results back in input order."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups = bucket([lengths[i] for i in order], batch_tokens)
    return [[order[j] for j in g] for g in groups]


class TrainBatches:
    """Training batches for one epoch at a time: shuffled, length-sorted, token-budgeted, deterministic by seed.

    The corpus is encoded once into flat int32 arrays (source `x EOS`, target `BOS y EOS`) with offsets; a batch
    is gathered from them by a few vectorised ops (tens of microseconds, where padding Python lists took
    milliseconds: on a GPU the host's time per step is what bounds small batches)."""

    def __init__(
        self,
        src: list[list[int]],
        tgt: list[list[int]],
        batch_tokens: int,
        seed: int,
        groups: list[tuple[int, int]] | None = None,
    ):
        """`groups`: for a corpus of several pairs, each pair's (first index, examples in an epoch); an epoch then
        draws that many of the pair's examples (all of them when the count is its size, a seeded sample without
        replacement when smaller, repeated passes when larger). None: every example once an epoch."""
        self.batch_tokens = batch_tokens
        self.seed = seed
        self.groups = groups
        self.src_flat, self.src_off, self.src_len = _flatten(src, [], [EOS])
        self.tgt_flat, self.tgt_off, self.tgt_len = _flatten(tgt, [BOS], [EOS])
        self.tgt_len -= 1  # decoder positions: BOS y (in) and y EOS (out)
        # a batch costs n * max(src_len, tgt_len) tokens (EOS/BOS included)
        self.lengths = torch.maximum(self.src_len, self.tgt_len)

    def __len__(self) -> int:
        return len(self.lengths)

    def epoch(self, epoch: int) -> list[list[int]]:
        """The batches (lists of example indices) of `epoch`, in training order."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self), generator=g)  # random tie-breaking among equal lengths
        if self.groups is not None:
            perm = self._draw(g)
        key = self.lengths * (int(self.src_len.max()) + 1) + self.src_len
        order = perm[torch.sort(key[perm], stable=True).indices]
        ranges = bucket_ascending(self.lengths[order].tolist(), self.batch_tokens)
        order = order.tolist()
        batches = [order[a:b] for a, b in ranges]
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def _draw(self, g: torch.Generator) -> torch.Tensor:
        """One epoch's examples of each group, in random order."""
        ends = [start for start, _ in self.groups[1:]] + [len(self)]
        drawn = []
        for (start, count), end in zip(self.groups, ends, strict=True):
            n = end - start
            passes = [torch.randperm(n, generator=g) for _ in range(-(-count // n))]
            drawn.append(start + torch.cat(passes)[:count])
        pool = torch.cat(drawn)
        return pool[torch.randperm(len(pool), generator=g)]

    def n_tgt(self, idx: list[int]) -> int:
        """Target tokens (EOS included) of a batch, without building it."""
        return int(self.tgt_len[torch.tensor(idx)].sum())

    def collate(self, idx: list[int]) -> Batch:
        """The same batch as `collate(src[idx], tgt[idx])`, gathered from the flat arrays."""
        i = torch.tensor(idx)
        src, src_mask = _gather(self.src_flat, self.src_off[i], self.src_len[i])
        tgt_in, _ = _gather(self.tgt_flat, self.tgt_off[i], self.tgt_len[i])
        tgt_out, _ = _gather(self.tgt_flat, self.tgt_off[i] + 1, self.tgt_len[i])
        return Batch(src, src_mask, tgt_in, tgt_out)


def _flatten(seqs: list[list[int]], prefix: list[int], suffix: list[int]):
    """(flat int32 ids of prefix + s + suffix for each s, offsets, lengths)."""
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long) + len(prefix) + len(suffix)
    total = int(lens.sum())
    flat = np.fromiter(itertools.chain.from_iterable(prefix + s + suffix for s in seqs), np.int32, count=total)
    return torch.from_numpy(flat), torch.cumsum(lens, 0) - lens, lens


def _gather(flat: torch.Tensor, off: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows flat[off_i : off_i + len_i], right-padded with PAD to the longest: (ids (B, M) long, mask)."""
    j = torch.arange(int(lens.max()))
    mask = j < lens[:, None]
    pos = (off[:, None] + j).clamp_(max=len(flat) - 1)
    return flat[pos].long().masked_fill_(~mask, PAD), mask
