"""HTML translation (`format: "html"`): the page is parsed with BeautifulSoup (Python's html.parser underneath),
its text is translated a run at a time, and everything else is written back as it was.

A *run* is a stretch of an element's content made of text and inline elements (<b>, <i>, <a>, <span>, ...): it
is one piece of text for the model, so that a sentence split across inline tags is translated as one sentence.
Block elements (<p>, <div>, <li>, <br>, ...) end runs. <script>, <style>, <code>, <pre>, <textarea>, comments and
elements with translate="no" (or class "notranslate") are left alone; inside a run they stay where they were,
moved with the words around them.

Placing the inline tags back: each inline element's own text is translated too, and the element wraps the
stretch of the run's translation most like that translation (`_likeness`: characters alike, and the stretch's
words found among its words, so that a fragment translated into a wordier sentence still finds its words), less
0.15 for each word the stretch has more or fewer than the element's source words (scaled by the run's
target/source words); inside its parent's stretch, after its preceding sibling. Where nothing is alike (< 0.3),
it wraps the words at the relative place its text had. Every tag and attribute is kept;
entities outside the translated text are written back as they were (they are shielded from the parser);
translated text is escaped where it must be (&, <, >). Whitespace around a run is kept; inside a run it becomes
single spaces, as the browser shows it."""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass, field

from bs4 import BeautifulSoup, Doctype, NavigableString, Tag
from bs4.dammit import EntitySubstitution
from bs4.element import PreformattedString
from bs4.formatter import HTMLFormatter

INLINE = frozenset({
    "a", "abbr", "b", "bdi", "bdo", "cite", "data", "del", "dfn", "em", "font", "i", "ins", "label", "mark", "q", "s",
    "small", "span", "strong", "sub", "sup", "time", "u",
})  # fmt: skip
KEEP = frozenset({"script", "style", "code", "pre", "textarea", "kbd", "samp", "var", "noscript", "template", "svg",
                  "math"})  # fmt: skip
OPAQUE_INLINE = frozenset({"code", "kbd", "samp", "var", "img", "wbr", "input", "svg", "math"})  # kept, inside a run
MATCH_MIN = 0.3  # likeness below which an inline element is placed by position
LENGTH_COST = 0.15  # taken off the ratio for each word a span is longer or shorter than the element's text

_SHIELD = "\ue000"  # stands for the & of an entity while the page is parsed, so that it is written back as it was
_ENTITY = re.compile(r"&(#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)")
_EDGE = re.compile(r"(?:\s|\ue000(?:nbsp|#160|#[xX]a0);)*")  # whitespace at the edge of a run, as written
_TRAIL = re.compile(r"(?:\s|\ue000(?:nbsp|#160|#[xX]a0);)$")
_PUNCT_ONLY = re.compile(r"^[.,;:!?…)\]»“”\"']+$")
_PUNCT = re.compile(r"^([(\[«„“\"']*)(.*?)([.,;:!?…)\]»“”\"']*)$")


class _Formatter(HTMLFormatter):
    """Escapes &, < and > (shielded entities are restored after), writes void elements as <br>, attributes in
    their order."""

    def __init__(self):
        super().__init__(entity_substitution=EntitySubstitution.substitute_xml, void_element_close_prefix="",
                         empty_attributes_are_booleans=True)  # fmt: skip

    def attributes(self, tag: Tag):
        return list(tag.attrs.items())


class _Doctype(Doctype):
    SUFFIX = ">"  # bs4's adds a newline


class _Soup(BeautifulSoup):
    """BeautifulSoup that keeps whitespace-only strings as they are (it otherwise makes them one space or one
    newline)."""

    def reset(self) -> None:
        super().reset()
        self.preserve_whitespace_tag_stack.append(self)


def _kept(el: Tag) -> bool:
    """Whether an element is left untranslated."""
    return el.name in KEEP or el.get("translate") == "no" or "notranslate" in (el.get("class") or [])


def _inline(el: Tag) -> bool:
    """An inline element whose content is text and inline elements only (it can sit inside a run)."""
    if el.name in OPAQUE_INLINE or (_kept(el) and el.name in INLINE):
        return True
    return el.name in INLINE and all(not isinstance(c, Tag) or _inline(c) for c in el.children)


def _trail(s: str) -> str:
    """The whitespace (and non-breaking space entities) `s` ends with."""
    end = len(s)
    while m := _TRAIL.search(s, 0, end):
        end = m.start()
    return s[end:]


def _tokens(text: str) -> tuple[list[str], list[bool]]:
    """A translation's words, punctuation at their edges apart (so that a tag can close before a full stop), and
    whether a space comes before each."""
    toks, spaces = [], []
    for word in text.split():
        for k, piece in enumerate(p for p in _PUNCT.match(word).groups() if p):
            toks.append(piece)
            spaces.append(k == 0)
    return toks, spaces


def _is_text(node) -> bool:
    return isinstance(node, NavigableString) and not isinstance(node, PreformattedString)


def _text(s: str) -> str:
    """The text a string node shows: shielded entities decoded."""
    return html.unescape(s.replace(_SHIELD, "&"))


@dataclass
class _Node:
    """An inline element of a run: where its text lies in the run's text (normalized), its children."""

    tag: Tag | None  # None: the run itself
    start: int = 0
    end: int = 0
    opaque: bool = False  # left alone: placed, not translated
    children: list[_Node] = field(default_factory=list)
    text: int = -1  # index of its own translation in HtmlPage.texts (-1: none)
    stop: bool = False  # its text ends with punctuation
    words: int = 0  # the words of its text
    span: tuple[int, int] = (0, 0)  # the words of the run's translation it wraps


@dataclass
class _Run:
    parent: Tag
    items: list  # the run's nodes, siblings in `parent`
    root: _Node
    text: int  # index of the run's text in HtmlPage.texts
    lead: str
    trail: str


class HtmlPage:
    """A page to translate: `texts` (what the model translates: each run's text, then its inline elements'),
    and `render(translations)`, the page with the runs translated."""

    def __init__(self, page: str):
        self.soup = _Soup(_ENTITY.sub(_SHIELD + r"\1", page), "html.parser")
        for node in list(self.soup.contents):
            if isinstance(node, Doctype):
                node.replace_with(_Doctype(str(node)))
        self.texts: list[str] = []
        self.runs: list[_Run] = []
        self._visit(self.soup)

    def _visit(self, el: Tag) -> None:
        run: list = []
        for child in list(el.children):
            if isinstance(child, PreformattedString):  # a comment: kept where it is (inside a run: with it)
                if run:
                    run.append(child)
                continue
            if isinstance(child, NavigableString) or (isinstance(child, Tag) and _inline(child)):
                run.append(child)
                continue
            self._close(el, run)
            run = []
            if isinstance(child, Tag) and not _kept(child):
                self._visit(child)
        self._close(el, run)

    def _close(self, parent: Tag, items: list) -> None:
        """Make a run of `items` if they hold text to translate."""
        root = _Node(None)
        chars: list[str] = []

        def walk(node, into: _Node) -> None:
            if isinstance(node, PreformattedString):  # a comment inside a run: kept where it is
                into.children.append(_Node(node, len(chars), len(chars), opaque=True))
            elif isinstance(node, NavigableString):
                for c in _text(str(node)):
                    if not c.isspace():
                        chars.append(c)
                    elif chars and chars[-1] != " ":
                        chars.append(" ")
            elif node.name in OPAQUE_INLINE or _kept(node):
                into.children.append(_Node(node, len(chars), len(chars), opaque=True))
            else:
                me = _Node(node, len(chars))
                into.children.append(me)
                for c in node.children:
                    walk(c, me)
                me.end = len(chars)

        for item in items:
            walk(item, root)
        text = "".join(chars)
        if not text.strip():
            return
        root.end = len(text.rstrip())
        root.text = len(self.texts)
        self.texts.append(text.strip())
        self._own_texts(root, text)
        first, last = items[0], items[-1]
        lead = _EDGE.match(str(first)).group() if _is_text(first) else ""
        trail = _trail(str(last)) if _is_text(last) else ""
        self.runs.append(_Run(parent, items, root, root.text, lead, trail))

    def _own_texts(self, node: _Node, text: str) -> None:
        for child in node.children:
            own = text[child.start : child.end].strip()
            if not child.opaque and own:
                child.text, child.stop, child.words = len(self.texts), not own[-1].isalnum(), len(own.split())
                self.texts.append(own)
            self._own_texts(child, text)

    def render(self, translations: list[str]) -> str:
        """The page with each run replaced by its translation (`translations`: one for each of `texts`)."""
        if len(translations) != len(self.texts):
            raise ValueError(f"{len(self.texts)} texts, {len(translations)} translations")
        for run in self.runs:
            words = _tokens(translations[run.text])
            length = len(self.texts[run.text]) or 1
            run.root.span = (0, len(words[0]))
            run_words = _Words(words[0])
            scale = sum(run_words.real) / max(1, len(self.texts[run.text].split()))  # target words a source word
            _place(run.root, run_words, translations, length, scale)
            marker = NavigableString("")
            run.items[0].insert_before(marker)
            nodes = _build(run.root, words)  # the run's elements, taken out of the page and refilled
            for item in run.items:
                if item.parent is not None:
                    item.extract()
            for n in [run.lead, *nodes, run.trail]:
                if n != "":
                    marker.insert_before(NavigableString(n) if type(n) is str else n)
            marker.extract()
        return self.soup.decode(formatter=_Formatter()).replace(_SHIELD, "&")


def _norm(words: list[str]) -> list[str]:
    return [w.strip(".,;:!?\"'()«»„“”").lower() for w in words]


class _Words:
    """A run's translated tokens, normalised once: each one's lowercase form without edge punctuation, and whether
    it is a word (not punctuation alone)."""

    def __init__(self, toks: list[str]):
        self.toks, self.norm = toks, _norm(toks)
        self.real = [not _PUNCT_ONLY.match(w) for w in toks]

    def __len__(self) -> int:
        return len(self.toks)


def _found(norm: list[str], want: list[str]) -> list[bool]:
    """For each word, whether a word of `want` is like it (difflib ratio >= 0.75: "dogs" and "dog")."""
    return [bool(w) and any(difflib.SequenceMatcher(None, w, x).ratio() >= 0.75 for x in want) for w in norm]


def _likeness(span: list[str], want: list[str], found: list[bool]) -> float:
    """How well a stretch of the translation matches an element's own translation (words normalised): the mean
    of difflib's ratio over their characters (both alike) and the share of the stretch's words found among its
    words (`found`, the stretch's flags from `_found`: the stretch inside a longer, wordier translation of a
    fragment)."""
    if not any(span):
        return 0.0
    whole = difflib.SequenceMatcher(None, " ".join(span), " ".join(want), autojunk=False).ratio()
    return 0.5 * whole + 0.5 * sum(found) / sum(1 for w in span if w)


def _place(node: _Node, words: _Words, translations: list[str], length: int, scale: float) -> None:
    """Each child's span of words inside `node`'s span: its translation's best match, else its position."""
    lo, hi = node.span
    for child in node.children:
        by_pos = round(child.start / length * len(words))
        at = min(max(by_pos, lo), hi)
        if child.opaque or child.text < 0:
            child.span = (at, at)
        else:
            want = _norm(translations[child.text].split())
            found = _found(words.norm, want)
            expect = max(1, round(child.words * scale))  # as many words as its source text has, scaled
            best, span = MATCH_MIN, None
            for i in range(lo, hi):
                if not words.real[i]:
                    continue
                for j in range(i + 1, min(hi, i + 2 * expect + 2) + 1):
                    if not words.real[j - 1]:  # a full stop goes in only after its sentence (below)
                        continue
                    r = _likeness(words.norm[i:j], want, found[i:j])
                    r -= LENGTH_COST * abs(sum(words.real[i:j]) - expect) + 1e-3 * abs(i - by_pos)  # ties: nearer
                    if r > best:
                        best, span = r, (i, j)
            if span is None:
                end = round(child.end / length * len(words))
                span = (at, min(max(end, at + 1), hi))
            i, j = span
            if child.stop and j < hi and not words.real[j]:  # its text ends a sentence: the full stop too
                j += 1
            child.span = (i, j)
        lo = child.span[1]
        _place(child, words, translations, length, scale)


def _build(node: _Node, words: tuple[list[str], list[bool]]) -> list:
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
            inner = _build(child, words)
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
