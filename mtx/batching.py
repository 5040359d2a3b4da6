"""Length-bucketed, token-budget batches with boolean padding masks (True = real token).

Source ids end in EOS; the target is split into decoder input (BOS + y) and output (y + EOS),
shifted by one. Masks are built here, once, and nowhere else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from mtx.tokenizer import BOS, EOS, PAD


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) long
    src_mask: torch.Tensor  # (B, S) bool, True = token
    tgt_in: torch.Tensor | None = None  # (B, T) long: BOS y1 .. yn
    tgt_out: torch.Tensor | None = None  # (B, T) long: y1 .. yn EOS (PAD beyond)
    index: list[int] | None = None  # positions of these sentences in the input

    @property
    def n_tgt_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum()) if self.tgt_out is not None else 0

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def mv(t):
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return Batch(mv(self.src), mv(self.src_mask), mv(self.tgt_in), mv(self.tgt_out), self.index)

    def pin_memory(self) -> Batch:
        def pin(t):
            return None if t is None else t.pin_memory()

        return Batch(pin(self.src), pin(self.src_mask), pin(self.tgt_in), pin(self.tgt_out), self.index)


def pad(seqs: list[list[int]], length: int | None = None) -> torch.Tensor:
    length = length or max(len(s) for s in seqs)
    return torch.tensor([s + [PAD] * (length - len(s)) for s in seqs], dtype=torch.long)


def collate(src: list[list[int]], tgt: list[list[int]] | None = None, index: list[int] | None = None) -> Batch:
    """Build a padded batch; `src` and `tgt` are id lists without special tokens."""
    s = pad([x + [EOS] for x in src])
    batch = Batch(src=s, src_mask=s != PAD, index=index)
    if tgt is not None:
        batch.tgt_in = pad([[BOS] + y for y in tgt])
        batch.tgt_out = pad([y + [EOS] for y in tgt])
    return batch


def bucket(lengths: list[int], batch_tokens: int, max_sents: int = 0) -> list[list[int]]:
    """Group indices, in the given order, so that n_sents * max_len <= batch_tokens."""
    batches, cur, cur_max = [], [], 0
    for i in range(len(lengths)):
        new_max = max(cur_max, lengths[i])
        if cur and (new_max * (len(cur) + 1) > batch_tokens or (max_sents and len(cur) >= max_sents)):
            batches.append(cur)
            cur, new_max = [], lengths[i]
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    return batches


def sorted_batches(lengths: list[int], batch_tokens: int, max_sents: int = 0) -> list[list[int]]:
    """Batches of original indices over the inputs sorted by length (longest first)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups = bucket([lengths[i] for i in order], batch_tokens, max_sents)
    return [[order[j] for j in g] for g in groups]


class TrainBatches:
    """Training batches for one epoch at a time: shuffled, length-sorted, token-budgeted, deterministic by seed."""

    def __init__(self, src: list[list[int]], tgt: list[list[int]], batch_tokens: int, seed: int):
        self.src, self.tgt = src, tgt
        self.batch_tokens = batch_tokens
        self.seed = seed
        # +1 for EOS/BOS; a batch costs n * max(src_len, tgt_len) tokens
        self.lengths = [max(len(a), len(b)) + 1 for a, b in zip(src, tgt, strict=True)]

    def epoch(self, epoch: int) -> list[list[int]]:
        """The batches (lists of example indices) of `epoch`, in training order."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.src)))
        rng.shuffle(order)  # random tie-breaking among equal lengths
        order.sort(key=lambda i: (self.lengths[i], len(self.src[i])))
        groups = bucket([self.lengths[i] for i in order], self.batch_tokens)
        batches = [[order[j] for j in g] for g in groups]
        rng.shuffle(batches)
        return batches

    def n_tgt(self, idx: list[int]) -> int:
        """Target tokens (EOS included) of a batch, without building it."""
        return sum(len(self.tgt[i]) + 1 for i in idx)

    def collate(self, idx: list[int]) -> Batch:
        return collate([self.src[i] for i in idx], [self.tgt[i] for i in idx], idx)
