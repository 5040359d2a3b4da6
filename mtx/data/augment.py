"""Case and punctuation augmentation, on the fly: a seeded share of training batches has both sides in capitals
or in title case, and (drawn apart) without their final punctuation, so that a model also translates text typed in
capitals or without a full stop (as Mozilla's translation pipeline augments its training data).

A chosen batch's text is read where the data path keeps it (as subword regularisation reads it: resegment.py),
changed, and encoded anew (sampled where subword regularisation is on); the others are gathered from the encoded
columns as usual. Memory and the encoding cache are unchanged; batching uses the cached lengths, so a batch in
capitals (more pieces) is longer than its token budget, and a side longer than the model's positions is cut.
The choice is a function of the batch's rows and the training's seed: the same in every run, resumed ones too."""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import Iterable, Iterator

import numpy as np

from mtx.data.resegment import Resegmenter


def upper(text: str) -> str:
    return text.upper()


def title(text: str) -> str:
    """Each word's first letter in capitals, the rest as it was ("don't" stays one word: "Don't")."""
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


def no_final_punctuation(text: str) -> str:
    """The text without the punctuation (and spaces) it ends with: "Ein Hund." -> "Ein Hund"."""
    end = len(text)
    while end and (text[end - 1].isspace() or unicodedata.category(text[end - 1]).startswith("P")):
        end -= 1
    return text[:end]


class Augmenter:
    """For a batch's rows: None (the batch stays as it is), or its sides changed and encoded anew."""

    def __init__(self, texts: Resegmenter, p_upper: float, p_title: float, p_nopunct: float, seed: int):
        self.texts, self.seed = texts, seed
        self.p_upper, self.p_title, self.p_nopunct = p_upper, p_title, p_nopunct

    def changes(self, rows: np.ndarray) -> list:
        """What a batch of `rows` gets: none, one or both of (a case change, no final punctuation)."""
        rng = np.random.default_rng(zlib.crc32(rows.astype(np.int64).tobytes() + b"augment", self.seed))
        case, punct = rng.random(2)
        out = []
        if case < self.p_upper:
            out.append(upper)
        elif case < self.p_upper + self.p_title:
            out.append(title)
        if punct < self.p_nopunct:
            out.append(no_final_punctuation)
        return out

    def __call__(self, rows: np.ndarray, sampled: tuple[str, ...]) -> dict | None:
        """None for a batch left as it is; else {side: (ids (B, M) PAD-padded, lengths (B,))} for both sides,
        encoded with sampling on the `sampled` sides."""
        changes = self.changes(rows)
        if not changes:
            return None
        out = {}
        for side in ("src", "tgt"):
            texts = self.texts.texts(rows, side)
            for change in changes:
                texts = [change(t) for t in texts]
            out[side] = self.texts.encode(texts, rows, side, side in sampled)
        return out


def with_case_copies(lines: Iterable[str], p_upper: float, p_title: float, seed: int) -> Iterator[str]:
    """The tokenizer's training sample, and after a seeded share of its lines a copy in capitals (`p_upper`) or
    in title case (`p_title`): so that the vocabulary has pieces for the words the augmented batches spell in
    capitals, instead of cutting them into letters (3 to 4 times as many pieces under a cased vocabulary)."""
    rng = np.random.default_rng([seed, 34])
    for line in lines:
        yield line
        if p_upper or p_title:
            r = rng.random()
            if r < p_upper:
                yield upper(line)
            elif r < p_upper + p_title:
                yield title(line)
