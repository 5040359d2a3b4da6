"""The compact values a user writes on the command line or in a config, parsed: language pairs (`de-en,en-de`),
a sampling rule (`topk=10`, `topp=0.9`) and a list of corpora (`real + synthetic,tag=bt,weight=0.5`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

Pair = tuple[str, str]  # (source language, target language)
JOIN = " + "  # between corpora in data.path


def parse_pairs(text: str) -> list[Pair]:
    """`de-en,en-de` -> [("de", "en"), ("en", "de")]; ValueError on a malformed or repeated pair."""
    pairs: list[Pair] = []
    for item in text.split(","):
        src, sep, tgt = item.strip().partition("-")
        if not sep or not src or not tgt or "-" in tgt or src == tgt:
            raise ValueError(f"{item.strip()!r} is not SRC-TGT with two different language codes")
        if (src, tgt) in pairs:
            raise ValueError(f"{item.strip()} is given twice")
        pairs.append((src, tgt))
    return pairs


def parse_sample(text: str) -> tuple[int, float]:
    """`topk=K` -> (K, 1.0), `topp=P` -> (0, P); ValueError otherwise (K >= 0, 0 < P <= 1)."""
    kind, _, value = text.partition("=")
    if kind == "topk" and value.isdigit():
        return int(value), 1.0
    if kind == "topp" and 0 < (p := float(value)) <= 1:
        return 0, p
    raise ValueError(text)


@dataclass(frozen=True)
class CorpusSpec:
    """One corpus of a training: where it is (any `--data` form), how often an epoch draws each of its pairs
    (`weight` times, e.g. 0.5: half of them, 2: each twice) and the tag its sources start with (`<tag>`; "": none)."""

    path: str
    weight: float = 1.0
    tag: str = ""

    def __str__(self) -> str:
        opts = ([f"weight={self.weight:g}"] if self.weight != 1 else []) + ([f"tag={self.tag}"] if self.tag else [])
        return ",".join([self.path, *opts])


TAG = re.compile(r"[A-Za-z0-9_]+")


def parse_corpus(text: str) -> CorpusSpec:
    """`PATH[,weight=W][,tag=NAME]` (options peeled from the right, so a path may hold commas); ValueError on a
    bad option."""
    path, opts = text.strip(), {}
    while (m := re.search(r",\s*(weight|tag)=([^,]*)$", path)) is not None:
        if m.group(1) in opts:
            raise ValueError(f"{m.group(1)} is given twice")
        opts[m.group(1)], path = m.group(2).strip(), path[: m.start()].strip()
    if not path:
        raise ValueError("no path")
    weight = float(opts.get("weight", 1))
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"weight={opts['weight']}: must be a number > 0")
    tag = opts.get("tag", "")
    if "tag" in opts and not TAG.fullmatch(tag):
        raise ValueError(f"tag={tag}: letters, digits and _ only")
    return CorpusSpec(path, weight, tag)


def parse_corpora(text: str) -> list[CorpusSpec]:
    """`A + B,tag=bt` -> the corpora, in order; ValueError on a bad one or a path given twice."""
    specs = [parse_corpus(part) for part in text.split(JOIN)]
    paths = [s.path for s in specs]
    if len(set(paths)) < len(paths):
        raise ValueError("a corpus is given twice")
    return specs
