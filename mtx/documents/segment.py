"""Sentences of a line, by sentence-splitter (the Moses splitter's rules and its lists of non-breaking prefixes:
"z. B.", "Dr.", "am 3. Oktober" stay whole), for the request's source language (English's rules for a language
it has no list for). Why this segmenter: the comparison in docs/deploy.md (`python scripts/segmenters.py`)."""

from __future__ import annotations

from functools import cache

from sentence_splitter import SentenceSplitter, SentenceSplitterException

FALLBACK = "en"


@cache
def _splitter(lang: str) -> SentenceSplitter:
    try:
        return SentenceSplitter(language=lang)
    except SentenceSplitterException:
        return SentenceSplitter(language=FALLBACK)


def split_sentences(line: str, lang: str = FALLBACK) -> list[str]:
    """`line`'s sentences in language `lang` (none for a blank line), without the spaces around them."""
    if not line.strip():
        return []
    return [s.strip() for s in _splitter(lang or FALLBACK).split(line.strip()) if s.strip()]
