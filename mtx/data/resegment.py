"""Subword regularisation (Kudo, 2018): training sentences segmented anew each time a batch is built, sampled
from the tokenizer's segmentations (sentencepiece's `enable_sampling`: unigram with smoothing `alpha` over all
segmentations; BPE-dropout with probability `alpha` for a BPE tokenizer).

The text stays where the data path keeps it (memory-mapped Arrow tables, pages given back after each batch), so
memory does not grow with the corpus; batching still uses the cached deterministic lengths, and a sampled
segmentation longer than the model's positions is cut. Validation and decoding use the one best segmentation.
"""

from __future__ import annotations

import zlib

import numpy as np
import sentencepiece as spm

from mtx.data.sources import PairSplit
from mtx.data.tokenizer import PAD, Tokenizer


class Resegmenter:
    """Sampled ids of training rows (indices into the splits end to end), for the sides `sides` names."""

    def __init__(self, tok: Tokenizer, splits: list[PairSplit], alpha: float, sides: str, seed: int, limit: int):
        """`sides`: src, tgt, both, or "" (none: the texts only, for augment.py)."""
        self.sp, self.splits, self.alpha, self.limit = tok.sp, splits, alpha, limit
        self.sides = ("src", "tgt") if sides == "both" else (sides,) if sides else ()
        self.starts = np.cumsum([0, *(len(s) for s in splits)])
        self.seed = seed

    def texts(self, rows: np.ndarray, side: str) -> list[str]:
        """The text of `rows` on one side, in their order."""
        part = np.searchsorted(self.starts, rows, side="right") - 1
        out: list[str] = [""] * len(rows)
        for p in np.unique(part):
            at = np.flatnonzero(part == p)
            col = self.splits[p].ds[(rows[at] - self.starts[p]).tolist()][side]
            for k, text in zip(at, col, strict=True):
                out[k] = (text or "").strip()
            self.splits[p].release()
        return out

    def __call__(self, rows: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids (B, M) int64 padded with PAD, lengths (B,)) of a sampled segmentation of `rows`' `side`."""
        return self.encode(self.texts(rows, side), rows, side, True)

    def encode(self, texts: list[str], rows: np.ndarray, side: str, sample: bool) -> tuple[np.ndarray, np.ndarray]:
        """`texts` (those of `rows`' `side`, maybe changed: augment.py) encoded, with a sampled segmentation if
        `sample`, cut to the model's positions: (ids (B, M) int64 padded with PAD, lengths (B,))."""
        if not sample:
            return padded([x[: self.limit] for x in self.sp.encode(texts, out_type=int)])
        # Encoding on one thread seeds that thread's generator from the global seed: a seed of the rows (and of
        # the training's seed) makes each batch's samples the same in every run, resumed ones too, and a sentence
        # in another batch (another epoch) gets another sample
        spm.set_random_generator_seed(zlib.crc32(rows.astype(np.int64).tobytes() + side.encode(), self.seed) or 1)
        ids = self.sp.encode(texts, out_type=int, enable_sampling=True, alpha=self.alpha, nbest_size=-1,
                             num_threads=1)  # fmt: skip
        return padded([x[: self.limit] for x in ids])


def padded(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(ids (B, M) int64 padded with PAD, lengths (B,)) of the rows `ids`."""
    lens = np.fromiter(map(len, ids), np.int64, count=len(ids))
    out = np.full((len(ids), int(lens.max(initial=0))), PAD, np.int64)
    for i, x in enumerate(ids):
        out[i, : len(x)] = x
    return out, lens
