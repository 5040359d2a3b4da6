"""Glossaries: terms whose translation is given (a TSV file of `source term<TAB>target term` lines), and where
they stand in a sentence. The search that makes each found term's translation appear is the decoder's job; this
module reads the file and finds the terms.

Matching, as documented in docs/recipes.md:
- on the text, at word boundaries: a term starts and ends where a letter or digit does not go on ("Hund" is found
  in "Der Hund, der" but not in "Hundehütte");
- a space inside a term matches any run of spaces, so multi-word terms span line-wrapped or doubled spaces;
- letter case is ignored ("hund" finds "Hund" and "HUND"), except for a term with a capital after its first
  letter ("EU", "iPhone"), found only as written;
- longest first: where several terms start at one place the longest wins, and found terms never overlap (the
  sentence is read left to right).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mtx.data.text import lines
from mtx.errors import MtxError


@dataclass(frozen=True)
class Term:
    start: int  # character offsets of the term in the sentence
    end: int
    source: str  # the glossary's source term
    target: str  # its translation, which the output must hold


class Glossary:
    def __init__(self, entries: dict[str, str]):
        """`entries`: source term -> target term."""
        self.entries = dict(entries)
        self.by_key = {_key(s): (s, t) for s, t in self.entries.items()}  # a term's key -> (term, translation)
        # longest first: regex alternation takes the first alternative that matches at a place
        terms = sorted(self.entries, key=len, reverse=True)
        alts = [_pattern(s) for s in terms]
        self.regex = re.compile(r"(?<![^\W_])(?:" + "|".join(alts) + r")(?![^\W_])") if alts else None

    def __len__(self) -> int:
        return len(self.entries)

    def find(self, sentence: str) -> list[Term]:
        """The glossary's terms in `sentence`, left to right, never overlapping (longest first where they start
        together)."""
        if self.regex is None:
            return []
        out = []
        for m in self.regex.finditer(sentence):
            source, target = self._entry(m.group(0))
            out.append(Term(m.start(), m.end(), source, target))
        return out

    def _entry(self, found: str) -> tuple[str, str]:
        """The (term, translation) a found text is: a term matched as written, else one matched in any case."""
        written = " ".join(found.split())
        return self.by_key.get(written) or self.by_key[written.casefold()]


def find_all(glossaries: list[Glossary], sentence: str) -> list[Term]:
    """The terms of several glossaries in `sentence`, left to right: each glossary's that overlap none of an
    earlier glossary's (the first glossary wins where they overlap)."""
    out: list[Term] = []
    for g in glossaries:
        out += [t for t in g.find(sentence) if all(t.end <= u.start or t.start >= u.end for u in out)]
    return sorted(out, key=lambda t: t.start)


def _key(term: str) -> str:
    """A term's key: spaces collapsed; case folded unless it is matched as written."""
    term = " ".join(term.split())
    return term if _exact(term) else term.casefold()


def _exact(term: str) -> bool:
    """A term with a capital after its first letter is matched as written."""
    return any(c.isupper() for c in term[1:])


def _pattern(term: str) -> str:
    body = r"\s+".join(re.escape(w) for w in term.split())
    return body if _exact(term) else f"(?i:{body})"


def read_glossary(path: Path) -> Glossary:
    """A glossary file: UTF-8, a `source term<TAB>target term` line each; blank lines and lines starting with `#`
    skipped. A malformed line, an empty term or a source term given two translations is an error naming the file
    and line."""
    return parse_glossary(lines(path), str(path))


def parse_glossary(rows: Iterable[str], where: str) -> Glossary:
    """A glossary from the lines of a file (or of a request's field), named `where` in errors."""
    entries: dict[str, str] = {}
    first: dict[str, tuple[int, str]] = {}  # a term's key -> (its first line, its translation)
    for i, line in enumerate(rows, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 2:
            raise MtxError(f"{where}:{i}: expected 'source term<TAB>target term' (found {len(cols) - 1} tabs)")
        source, target = (" ".join(c.split()) for c in cols)
        if not source or not target:
            raise MtxError(f"{where}:{i}: empty {'source' if not source else 'target'} term")
        line_no, known = first.setdefault(_key(source), (i, target))
        if known != target:
            raise MtxError(f"{where}:{i}: {source!r} has another translation on line {line_no}")
        if line_no == i:  # the first of a term's lines
            entries[source] = target
    return Glossary(entries)


def terms_used(glossary: Glossary, sources: list[str], outputs: list[str]) -> tuple[int, int]:
    """(terms found in the sources, terms whose translation the outputs hold): a target term needed k times in a
    sentence counts as used as many times as its output holds it, up to k."""
    found = used = 0
    for src, out in zip(sources, outputs, strict=True):
        need: dict[str, int] = {}
        for t in glossary.find(src):
            need[t.target] = need.get(t.target, 0) + 1
        found += sum(need.values())
        used += sum(min(k, out.count(target)) for target, k in need.items())
    return found, used
