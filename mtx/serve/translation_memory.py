"""The server's translation memory, a sentence at a time: approved translations (`mtx serve --memory-file`, a TMX
or a TSV), which always win for the exact source sentence, and an LRU of what was decoded (`--memory N`), keyed
by everything a sentence's translation depends on (its pieces, the target, the decoding options, its prefix and
terms), so that an exact repeat is answered without decoding and as it was the first time."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from cachetools import LRUCache

from mtx.config import DecodeConfig
from mtx.data.text import lines
from mtx.decode.translator import Translation
from mtx.errors import MtxError, UsageError

Approved = dict[tuple[str, str], dict[str, str]]  # (source language, target language): {source: translation}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def read_memory_file(path: Path, pairs: list[tuple[str | None, str]]) -> Approved:
    """Approved translations for the model's `pairs`: a TMX (.tmx; each unit's variants by their xml:lang, "de-DE"
    read as "de"), or a TSV of source<TAB>translation lines (for a model of one pair). One-line errors name the
    file and line."""
    if not path.is_file():
        raise UsageError(f"--memory-file {path}: file not found")
    wanted = {(s, t) for s, t in pairs if s is not None}
    if path.suffix.lower() == ".tmx":
        return _tmx(path, wanted)
    if len(pairs) != 1 or pairs[0][0] is None:
        raise UsageError(f"--memory-file {path}: a TSV holds one direction; for a model of several, give a TMX")
    out: dict[str, str] = {}
    for i, row in enumerate(lines(path), 1):
        if not row.strip():
            continue
        cols = row.split("\t")
        if len(cols) != 2 or not cols[0].strip() or not cols[1].strip():
            raise MtxError(f"{path}:{i}: expected source<TAB>translation, both non-empty")
        out[cols[0].strip()] = cols[1].strip()
    return {pairs[0]: out}  # type: ignore[dict-item]: checked above


def _tmx(path: Path, wanted: set[tuple[str, str]]) -> Approved:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise MtxError(f"{path}:{e.position[0]}: not TMX ({e})") from None
    if root.tag != "tmx" or root.find("body") is None:
        raise MtxError(f"{path}: not TMX (no <tmx><body>)")
    out: Approved = {}
    for unit in root.iter("tu"):
        texts = {}
        for tuv in unit.iter("tuv"):
            lang = (tuv.get(XML_LANG) or tuv.get("lang") or "").split("-")[0].split("_")[0].lower()
            seg = tuv.find("seg")
            text = " ".join("".join(seg.itertext()).split()) if seg is not None else ""
            if lang and text:
                texts[lang] = text
        for s in texts:
            for t in texts:
                if (s, t) in wanted:
                    out.setdefault((s, t), {})[texts[s]] = texts[t]
    return out


class TranslationMemory:
    def __init__(self, size: int, approved: Approved | None = None, counted=None):
        """`size`: sentences the cache holds (0: none); `counted(result)`: told of each lookup's result (approved,
        hit or miss), for /metrics."""
        self.cache: LRUCache | None = LRUCache(maxsize=size) if size > 0 else None
        self.approved = approved or {}
        self.counts = {"approved": 0, "hit": 0, "miss": 0}
        self.counted = counted

    def _count(self, result: str) -> None:
        self.counts[result] += 1
        if self.counted is not None:
            self.counted(result)

    def __bool__(self) -> bool:
        return self.cache is not None or bool(self.approved)

    @staticmethod
    def key(tgt: str, ids: list[int], options: DecodeConfig, forced: list[int] | None, terms) -> tuple:
        return (tgt, tuple(ids), options, tuple(forced or ()), tuple(tuple(t) for t in terms or ()))

    def lookup(self, srcs: list[str | None], tgt: str, sentences: list[str], keys: list[tuple], approved_ids,
               nbest: int) -> list[Translation | None]:  # fmt: skip
        """Each sentence's remembered translation, or None: an approved one for (its source language, `tgt`) and
        its exact text first, then the cache's. `approved_ids(text)`: the pieces of an approved translation."""
        out: list[Translation | None] = []
        for src, sentence, k in zip(srcs, sentences, keys, strict=True):
            text = self.approved.get((src, tgt), {}).get(sentence.strip()) if src is not None else None
            if text is not None:
                self._count("approved")
                out.append(Translation(text, [(text, 0.0)] * nbest, approved_ids(text), 1.0))
                continue
            got = self.cache.get(k) if self.cache is not None else None
            self._count("hit" if got is not None else "miss")
            out.append(got)
        return out

    def keep(self, keys: list[tuple], translations: list[Translation]) -> None:
        if self.cache is not None:
            for k, tr in zip(keys, translations, strict=True):
                self.cache[k] = tr
