"""Where a run's inline elements go in its translation: each element wraps the translated words from the first to
the last aligned inside its source text (one pass over the words per element), else the words at its relative
place; then the run's nodes rebuilt from the translation's words (markup.py parses and writes the page)."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from bs4 import Tag

PUNCT_ONLY = re.compile(r"^[.,;:!?…)\]»“”\"']+$")
_PUNCT = re.compile(r"^([(\[«„“\"']*)(.*?)([.,;:!?…)\]»“”\"']*)$")


@dataclass
class Node:
    """An inline element of a run: where its text lies in the run's text (normalized), its children."""

    tag: Tag | None  # None: the run itself
    start: int = 0
    end: int = 0
    opaque: bool = False  # left alone: placed, not translated
    children: list[Node] = field(default_factory=list)
    stop: bool = False  # its text ends with punctuation
    span: tuple[int, int] = (0, 0)  # the words of the run's translation it wraps


def tokens(text: str) -> tuple[list[str], list[bool], list[int]]:
    """A translation's words, punctuation at their edges apart (so that a tag can close before a full stop),
    whether a space comes before each, and where each starts in `text`."""
    toks, spaces, starts = [], [], []
    for m in re.finditer(r"\S+", text):
        at = m.start()
        for k, piece in enumerate(p for p in _PUNCT.match(m.group()).groups() if p):
            toks.append(piece)
            spaces.append(k == 0)
            starts.append(at)
            at += len(piece)
    return toks, spaces, starts


def origins(starts: list[int], pairs: list[tuple[int, int]]) -> list[int]:
    """The source character each token comes from: that of the last piece starting at or before the token."""
    at = [t for t, _ in pairs]
    return [pairs[max(bisect.bisect_right(at, s) - 1, 0)][1] for s in starts]


def place(node: Node, origin: list[int] | None, real: list[bool], length: int) -> None:
    """Each child's span of tokens inside `node`'s span: from the first to the last word aligned inside its
    source text (after its preceding sibling); by position where none is (or without alignments). A kept or empty
    element goes before the first word aligned at or after its place (by position without alignments)."""
    lo, hi = node.span
    n = len(real)
    for child in node.children:
        at = min(max(round(child.start / length * n), lo), hi)
        span = None
        if origin is not None and (child.opaque or child.end == child.start):  # before the first word after it
            at = next((i for i in range(lo, hi) if origin[i] >= child.start), hi)
        elif origin is not None:
            inside = [i for i in range(lo, hi) if real[i] and child.start <= origin[i] < child.end]
            if inside:
                span = (inside[0], inside[-1] + 1)
        if span is None:
            end = round(child.end / length * n) if child.end > child.start else at
            span = (at, min(max(end, at + (child.end > child.start)), hi))
        i, j = span
        if not child.opaque and child.stop and j < hi and not real[j]:  # it ended a sentence: the full stop too
            j += 1
        child.span = (i, j) if not child.opaque else (at, at)
        lo = max(lo, child.span[1])
        place(child, origin, real, length)


def build(node: Node, words: tuple[list[str], list[bool]]) -> list:
    """The nodes of `node`'s span: its words and its children (elements refilled, kept ones as they were), spaced
    as the translation was."""
    toks, spaces = words

    def say(a: int, b: int) -> str:
        return "".join((" " if spaces[i] and i > a else "") + toks[i] for i in range(a, b))

    units: list = []  # (the index of its first word or -1, a string or a node)
    pos, hi = node.span
    for child in node.children:
        if child.span[0] > pos:
            units.append((pos, say(pos, child.span[0])))
        if not child.opaque:
            inner = build(child, words)
            child.tag.clear()
            for n in inner:
                child.tag.append(n)
        first = child.span[0] if child.span[1] > child.span[0] else -1
        units.append((first, child.tag.extract() if child.tag.parent is not None else child.tag))
        pos = max(pos, child.span[1])
    if hi > pos:
        units.append((pos, say(pos, hi)))
    out: list = []

    def put(unit) -> None:  # a string after a string is joined to it
        if type(unit) is str and out and type(out[-1]) is str:
            out[-1] += unit
        else:
            out.append(unit)

    for k, (first, unit) in enumerate(units):
        if k and (first < 0 or spaces[first]):
            put(" ")
        put(unit)
    return out
