"""Length-bucketed, token-budget batches with boolean padding masks (True = real token).

Source ids end in EOS; the target is split into decoder input (BOS + y) and output (y + EOS),
shifted by one. Masks are built here, once, and nowhere else.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import torch

from mtx.data.encode import IdColumn
from mtx.data.tokenizer import BOS, EOS, PAD, UNK


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

    Examples are rows of two `IdColumn`s (encode.py: memory-mapped Arrow columns, or lists in tests), `rows`
    saying which rows train (after cleaning and any held-out validation) and `tags` the tags each source starts
    with (rows x k ids, PAD-padded on the right: the target-language tag, the corpus' tag; None: no tags). A
    batch is gathered from the columns by a few vectorised ops: source `[tags] x EOS`, decoder input `BOS y`,
    output `y EOS`. Memory: a few bytes of index per example."""

    def __init__(
        self,
        src: IdColumn | list[list[int]],
        tgt: IdColumn | list[list[int]],
        batch_tokens: int,
        seed: int,
        groups: list[tuple[int, int]] | None = None,
        rows: np.ndarray | None = None,
        tags: np.ndarray | None = None,
    ):
        """`groups`: for a corpus of several pairs, each pair's (first example, examples in an epoch); an epoch then
        draws that many of the pair's examples (all of them when the count is its size, a seeded sample without
        replacement when smaller, repeated passes when larger). None: every example once an epoch."""
        self.src = src if isinstance(src, IdColumn) else IdColumn.from_lists(src)
        self.tgt = tgt if isinstance(tgt, IdColumn) else IdColumn.from_lists(tgt)
        self.rows = np.arange(len(self.src), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        self.tags = None if tags is None else tags.reshape(len(tags), -1)  # one tag a row: a column
        tags = self.tags
        self.batch_tokens, self.seed, self.groups = batch_tokens, seed, groups
        # subword regularisation (resegment.py): resample(rows, side) -> sampled (ids, lengths) of those sides
        self.resample = None
        # case and punctuation augmentation (augment.py): augment(rows, sampled sides) -> None or both sides anew
        self.augment = None
        # decoder positions: BOS y (in) and y EOS (out); a batch costs n * max(src_len, tgt_len) tokens
        n_tags = 0 if tags is None else (tags != PAD).sum(1)
        self.src_len = torch.from_numpy(self.src.lengths[self.rows] + 1 + n_tags)
        self.tgt_len = torch.from_numpy(self.tgt.lengths[self.rows] + 1)
        self.lengths = torch.maximum(self.src_len, self.tgt_len)

    def __len__(self) -> int:
        return len(self.lengths)

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches (arrays of example indices) of `epoch`, in training order."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self), generator=g)  # random tie-breaking among equal lengths
        if self.groups is not None:
            perm = self._draw(g)
        key = self.lengths.long() * (int(self.src_len.max()) + 1) + self.src_len
        order = perm[torch.sort(key[perm], stable=True).indices].numpy()
        ranges = bucket_ascending(self.lengths.numpy()[order].astype(np.int64), self.batch_tokens)
        batches = [order[a:b] for a, b in ranges]
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def _draw(self, g: torch.Generator) -> torch.Tensor:
        """One epoch's examples of each group, in random order."""
        ends = [start for start, _ in self.groups[1:]] + [len(self)]
        drawn = []
        for (start, count), end in zip(self.groups, ends, strict=True):
            n = end - start
            if n == 0 or count == 0:
                continue
            passes = [torch.randperm(n, generator=g) for _ in range(-(-count // n))]
            drawn.append(start + torch.cat(passes)[:count])
        pool = torch.cat(drawn)
        return pool[torch.randperm(len(pool), generator=g)]

    def release(self) -> None:
        """Give back the memory-mapped pages that batches have read (they are read again when needed)."""
        self.src.release()
        self.tgt.release()

    def n_tgt(self, idx) -> int:
        """Target tokens (EOS included) of a batch, without building it."""
        return int(self.tgt_len[torch.as_tensor(idx)].sum())

    def collate(self, idx) -> Batch:
        """The same batch as `collate(src[idx], tgt[idx])` (with each source's tag), gathered from the columns."""
        rows = self.rows[np.asarray(idx)]
        sampled = self.resample.sides if self.resample is not None else ()
        changed = self.augment(rows, sampled) if self.augment is not None else None
        if changed is not None:
            (x, xn), (y, yn) = changed["src"], changed["tgt"]
        else:
            x, xn = self.resample(rows, "src") if "src" in sampled else self.src.gather(rows)
            y, yn = self.resample(rows, "tgt") if "tgt" in sampled else self.tgt.gather(rows)
        src = _ends(x, xn, None, EOS) if self.tags is None else _tagged(x, xn, self.tags[np.asarray(idx)])
        return Batch(src, src != PAD, _ends(y, yn, BOS, None), _ends(y, yn, None, EOS))


def _ends(ids: np.ndarray, lens: np.ndarray, first, last) -> torch.Tensor:
    """`first` (an id, or one per row) before and `last` after each row's `lens` ids: (B, M + extras) long."""
    k = first is not None
    out = torch.full((len(ids), ids.shape[1] + k + (last is not None)), PAD, dtype=torch.long)
    out[:, k : k + ids.shape[1]] = torch.from_numpy(ids)
    if k:
        out[:, 0] = torch.as_tensor(first)
    if last is not None:
        out[torch.arange(len(ids)), torch.from_numpy(lens) + k] = last
    return out


def _tagged(ids: np.ndarray, lens: np.ndarray, tags: np.ndarray) -> torch.Tensor:
    """Each row's tags (B, k; PAD-padded), then its `lens` ids, then EOS: (B, k + M + 1) long."""
    n = torch.from_numpy((tags != PAD).sum(1).astype(np.int64))  # tags of each row
    B, M, k = len(ids), ids.shape[1], tags.shape[1]
    out = torch.full((B, k + M + 1), PAD, dtype=torch.long)
    out[:, :k] = torch.from_numpy(tags.astype(np.int64))
    cols = n[:, None] + torch.arange(M)  # where each id goes
    real = torch.arange(M)[None, :] < torch.from_numpy(lens.astype(np.int64))[:, None]
    rows = torch.arange(B)[:, None].expand(B, M)
    out[rows[real], cols[real]] = torch.from_numpy(ids.astype(np.int64))[real]
    out[torch.arange(B), n + torch.from_numpy(lens.astype(np.int64))] = EOS
    return out
