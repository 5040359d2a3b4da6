"""HTML translation (`format: "html"`): the page is parsed with BeautifulSoup (Python's html.parser underneath),
its text is translated a run at a time, and everything else is written back as it was.

A *run* is a stretch of an element's content made of text and inline elements (<b>, <i>, <a>, <span>, ...): it
is one piece of text for the model, so that a sentence split across inline tags is translated as one sentence.
Block elements (<p>, <div>, <li>, <br>, ...) end runs. <script>, <style>, <code>, <pre>, <textarea>, comments and
elements with translate="no" (or class "notranslate") are left alone; inside a run they stay where they were,
moved with the words around them.

Placing the inline tags back: the model's own alignment (its cross-attention, `BatchTranslator.align`) says which
source character each translated word comes from; an inline element wraps the stretch of the translation from
the first to the last word aligned inside its source text (inside its parent's stretch, after its preceding
sibling; a full stop that ended its text too); a kept or empty element goes before the first word aligned at or
after its place. An element none of whose words is aligned, or a run without alignments (an engine that cannot
give them), takes the words at the relative place its text had. The cost is
the run's words times its elements. Every tag and attribute is kept;
entities outside the translated text are written back as they were (they are shielded from the parser);
translated text is escaped where it must be (&, <, >). Whitespace around a run is kept; inside a run it becomes
single spaces, as the browser shows it."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from bs4 import BeautifulSoup, Doctype, NavigableString, Tag
from bs4.dammit import EntitySubstitution
from bs4.element import PreformattedString
from bs4.formatter import HTMLFormatter

from mtx.documents.placement import PUNCT_ONLY, Node, build, origins, place, tokens

INLINE = frozenset({
    "a", "abbr", "b", "bdi", "bdo", "cite", "data", "del", "dfn", "em", "font", "i", "ins", "label", "mark", "q", "s",
    "small", "span", "strong", "sub", "sup", "time", "u",
})  # fmt: skip
KEEP = frozenset({"script", "style", "code", "pre", "textarea", "kbd", "samp", "var", "noscript", "template", "svg",
                  "math"})  # fmt: skip
OPAQUE_INLINE = frozenset({"code", "kbd", "samp", "var", "img", "wbr", "input", "svg", "math"})  # kept, inside a run
MAX_DEPTH = 100  # elements nested deeper make the page a bad request

_SHIELD = "\ue000"  # stands for the & of an entity while the page is parsed, so that it is written back as it was
_ENTITY = re.compile(r"&(#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)")
_EDGE = re.compile(r"(?:\s|\ue000(?:nbsp|#160|#[xX]a0);)*")  # whitespace at the edge of a run, as written
_TRAIL = re.compile(r"(?:\s|\ue000(?:nbsp|#160|#[xX]a0);)$")


class _Formatter(HTMLFormatter):
    """Escapes &, < and > (shielded entities are restored after), writes void elements as <br>, attributes in
    their order (a bare one, `disabled`, as `disabled=""`: the parser keeps no difference, nor does HTML)."""

    def __init__(self):
        super().__init__(entity_substitution=EntitySubstitution.substitute_xml, void_element_close_prefix="")

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


class PageError(ValueError):
    """A page mtx will not translate (nested too deeply)."""


def _depth(soup: BeautifulSoup) -> int:
    """How deeply the page's elements nest (without recursion)."""
    most, stack = 0, [(soup, 0)]
    while stack:
        el, d = stack.pop()
        most = max(most, d)
        stack.extend((c, d + 1) for c in el.children if isinstance(c, Tag))
    return most


def _is_text(node) -> bool:
    return isinstance(node, NavigableString) and not isinstance(node, PreformattedString)


def _text(s: str) -> str:
    """The text a string node shows: shielded entities decoded."""
    return html.unescape(s.replace(_SHIELD, "&"))


@dataclass
class _Run:
    parent: Tag
    items: list  # the run's nodes, siblings in `parent`
    root: Node
    text: int  # index of the run's text in HtmlPage.texts
    lead: str
    trail: str


class HtmlPage:
    """A page to translate: `texts` (what the model translates: each run's text), and `render(translations,
    alignments)`, the page with the runs translated. A page nested deeper than MAX_DEPTH is a PageError."""

    def __init__(self, page: str):
        self.soup = _Soup(_ENTITY.sub(_SHIELD + r"\1", page), "html.parser")
        if _depth(self.soup) > MAX_DEPTH:
            raise PageError(f"the page nests elements more than {MAX_DEPTH} deep")
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
        root = Node(None)
        chars: list[str] = []

        def walk(node, into: Node) -> None:
            if isinstance(node, PreformattedString):  # a comment inside a run: kept where it is
                into.children.append(Node(node, len(chars), len(chars), opaque=True))
            elif isinstance(node, NavigableString):
                for c in _text(str(node)):
                    if not c.isspace():
                        chars.append(c)
                    elif chars and chars[-1] != " ":
                        chars.append(" ")
            elif node.name in OPAQUE_INLINE or _kept(node):
                into.children.append(Node(node, len(chars), len(chars), opaque=True))
            else:
                me = Node(node, len(chars))
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
        self._stops(root, text)
        first, last = items[0], items[-1]
        lead = _EDGE.match(str(first)).group() if _is_text(first) else ""
        trail = _trail(str(last)) if _is_text(last) else ""
        self.runs.append(_Run(parent, items, root, root.text, lead, trail))

    def _stops(self, node: Node, text: str) -> None:
        """Marks the elements whose text ends with punctuation (they take the full stop after them)."""
        for child in node.children:
            own = text[child.start : child.end].strip()
            child.stop = bool(own) and not own[-1].isalnum()
            self._stops(child, text)

    def render(self, translations: list[str], alignments: list | None = None) -> str:
        """The page with each run replaced by its translation (`translations`: one for each of `texts`), its
        inline elements placed by `alignments` (for each run, None or (target char, source char) pairs, sorted:
        the translation's character at which a piece starts and the source character it is aligned to)."""
        if len(translations) != len(self.texts):
            raise ValueError(f"{len(self.texts)} texts, {len(translations)} translations")
        for k, run in enumerate(self.runs):
            toks, spaces, starts = tokens(translations[run.text])
            pairs = alignments[k] if alignments is not None else None
            origin = origins(starts, pairs) if pairs else None
            run.root.span = (0, len(toks))
            real = [not PUNCT_ONLY.match(w) for w in toks]
            place(run.root, origin, real, len(self.texts[run.text]) or 1)
            marker = NavigableString("")
            run.items[0].insert_before(marker)
            nodes = build(run.root, (toks, spaces))  # the run's elements, taken out of the page and refilled
            for item in run.items:
                if item.parent is not None:
                    item.extract()
            for n in [run.lead, *nodes, run.trail]:
                if n != "":
                    marker.insert_before(NavigableString(n) if type(n) is str else n)
            marker.extract()
        return self.soup.decode(formatter=_Formatter()).replace(_SHIELD, "&")
