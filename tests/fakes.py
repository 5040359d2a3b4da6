"""Stand-ins for a model behind `mtx serve`: a tokenizer of one piece a word, and translators of known outputs."""

from __future__ import annotations

import re

import torch

from mtx.config import DecodeConfig
from mtx.data.tokenizer import Tokenizer
from mtx.decode.translator import BatchTranslator, Translation


class WordPieces:
    """sentencepiece's calls that serve makes, one piece ("▁word") a word."""

    def __init__(self):
        self.words: list[str] = ["<pad>", "<unk>", "<s>", "</s>"]
        self.index: dict[str, int] = {}

    def id_of(self, word: str) -> int:
        if word not in self.index:
            self.index[word] = len(self.words)
            self.words.append(word)
        return self.index[word]

    def id_to_piece(self, i: int) -> str:
        return "\u2581" + self.words[i]


class WordTokenizer:
    def __init__(self):
        self.sp = WordPieces()

    def encode(self, lines: list[str]) -> list[list[int]]:
        return [[self.sp.id_of(w) for w in line.split()] for line in lines]

    def decode(self, ids: list[list[int]]) -> list[str]:
        return [" ".join(self.sp.words[i] for i in x) for x in ids]

    encode_groups = Tokenizer.encode_groups


class FunctionTranslator(BatchTranslator):
    """Translates each sentence with `fn` (text -> text), one word for each source word: aligned on the diagonal;
    a sentence's constraints (`terms`) are put after its translation, as " [term]"; its confidence is 1 / its
    source words."""

    def __init__(self, fn):
        self.tokenizer, self.cfg, self.batch_tokens, self.fn = WordTokenizer(), DecodeConfig(beam=1), 1000, fn
        self.max_len, self.seen, self.device = 256, [], "cpu"

    def decode_ids(self, ids, *, decode=None, on_sentence=None, forced=None, terms=None, **options):
        lines = self.tokenizer.decode(ids)
        self.seen.extend(lines)
        out = []
        for i, (line, head, ts) in enumerate(zip(lines, forced or [[]] * len(ids), terms or [[]] * len(ids),
                                                 strict=True)):  # fmt: skip
            text = self.fn(line)
            if head:
                text = " ".join(self.tokenizer.decode([head])[0].split() + text.split()[len(head) :])
            text += "".join(f" [{t}]" for t in self.tokenizer.decode(ts))
            tr = Translation(text, [(text, 0.0)] * (decode or self.cfg).nbest, self.tokenizer.encode([text])[0],
                             1 / max(len(line.split()), 1))  # fmt: skip
            out.append(tr)
            if on_sentence is not None:
                on_sentence(i, tr)
        return out

    def align(self, ids, targets, prefix=None):
        out = []
        for s, t in zip(ids, targets, strict=True):
            w = torch.zeros(len(t), len(s))
            w[torch.arange(len(t)), torch.arange(len(t)).clamp(max=len(s) - 1)] = 1.0
            out.append(w if s and t else None)
        return out


def diagonal(source: str, target: str) -> list[tuple[int, int]]:
    """(target char, source char) of the k-th words of each: a word-for-word alignment."""
    s = [m.start() for m in re.finditer(r"\S+", source)]
    t = [m.start() for m in re.finditer(r"\S+", target)]
    return [(a, s[min(k, len(s) - 1)]) for k, a in enumerate(t)]
