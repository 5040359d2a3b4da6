"""Word documents (.docx, python-docx) and OpenDocument texts (.odt, odfpy), each paragraph's text runs keeping
their own styles. A .docx: every paragraph of the body, its tables (nested ones too) and the sections' headers and
footers. An .odt: every paragraph and heading; its text runs are its own text and its spans of plain text, its
other elements (links, frames, notes) keep their place, untranslated. A paragraph is translated as an HTML run is
(formats.HtmlDocument): each text run becomes an inline element, placed back by the model's alignment, so a bold
word's translation is the bold one. Everything else in the file is written back as it was."""

from __future__ import annotations

import html
import io
import zipfile

from bs4 import BeautifulSoup, NavigableString, Tag
from docx import Document
from docx.opc.exceptions import PackageNotFoundError
from odf import teletype
from odf.element import Element
from odf.opendocument import load as load_odf
from odf.text import H, P, S, Span


class OfficeError(ValueError):
    """A file that is not the document its name says."""


MAX_UNZIPPED = 32 << 20  # bytes a document's zip may hold once unpacked: a small upload can unpack to gigabytes


def _opened(data: bytes, what: str) -> io.BytesIO:
    """`data` as a file, once its zip's unpacked size is known to be within MAX_UNZIPPED (checked before any XML
    is parsed: the sizes are in the zip's directory)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            size = sum(i.file_size for i in z.infolist())
    except zipfile.BadZipFile as e:
        raise OfficeError(f"not {what}: {e}") from None
    if size > MAX_UNZIPPED:
        raise OfficeError(f"{what} unpacks to {size} bytes: over the limit of {MAX_UNZIPPED}")
    return io.BytesIO(data)


def _paragraphs(container):
    """Every paragraph of a body, a cell or a header: its own, then those of its tables (and theirs)."""
    yield from container.paragraphs
    for table in getattr(container, "tables", []):
        for row in table.rows:
            for cell in row.cells:
                yield from _paragraphs(cell)


def _placed(runs: list, doc, translations: list[str], alignments: list | None) -> list[str]:
    """The text each of `runs` gets: the run's document (`<p>` of `<span id="rK">` elements) rendered, each span's
    text to its run, text between spans to the run before it."""
    page = doc.render(translations, alignments)
    texts = [""] * len(runs)
    at = 0
    p = BeautifulSoup(page, "html.parser").find("p")
    for node in p.children if p is not None else []:
        if isinstance(node, Tag) and node.get("id", "").startswith("r"):
            at = int(node["id"][1:])
            texts[at] += node.get_text()
        elif isinstance(node, NavigableString | Tag):
            texts[at] += node.get_text() if isinstance(node, Tag) else str(node)
    return texts


def _run_page(texts: list[str]) -> str:
    return "<p>" + "".join(f'<span id="r{k}">{html.escape(t)}</span>' for k, t in enumerate(texts)) + "</p>"


class _RunsDocument:
    """A document of paragraphs of text runs: each paragraph one HTML run (`_add`), its runs' texts set back
    (`_set`) and the file written (`_save`) by the format's class."""

    needs_alignment = True

    def __init__(self) -> None:
        self.paras: list[tuple[list, object]] = []  # (a paragraph's runs, its HTML run's document)
        self.sentences: list[str] = []

    def _add(self, runs: list, texts: list[str], run, lang: str) -> None:
        if "".join(texts).strip():
            doc = run(_run_page(texts), lang)
            self.paras.append((runs, doc))
            self.sentences += doc.sentences

    def render(self, translations: list[str], alignments: list | None = None) -> bytes:
        k = 0
        for runs, doc in self.paras:
            n = len(doc.sentences)
            texts = _placed(runs, doc, translations[k : k + n], alignments[k : k + n] if alignments else None)
            k += n
            for r, text in zip(runs, texts, strict=True):
                self._set(r, text)
        out = io.BytesIO()
        self.doc.save(out)
        return out.getvalue()


class DocxDocument(_RunsDocument):
    def __init__(self, data: bytes, lang: str, run):
        """`run(html, lang)`: a run's document (formats.HtmlDocument)."""
        super().__init__()
        opened = _opened(data, "a Word document (.docx)")
        try:
            self.doc = Document(opened)
        except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as e:
            raise OfficeError(f"not a Word document (.docx): {e}") from None
        containers = [self.doc]
        for section in self.doc.sections:
            containers += [section.header, section.footer]
        seen = set()
        for c in containers:
            for p in _paragraphs(c):
                if id(p._p) in seen:  # a merged cell repeats its paragraphs
                    continue
                seen.add(id(p._p))
                runs = [r for r in p.runs if r.text]
                self._add(runs, [r.text for r in runs], run, lang)

    @staticmethod
    def _set(r, text: str) -> None:
        r.text = text


class OdtDocument(_RunsDocument):
    def __init__(self, data: bytes, lang: str, run):
        """`run(html, lang)`: a run's document (formats.HtmlDocument)."""
        super().__init__()
        opened = _opened(data, "an OpenDocument text (.odt)")
        try:
            self.doc = load_odf(opened)
        except (zipfile.BadZipFile, KeyError, ValueError) as e:
            raise OfficeError(f"not an OpenDocument text (.odt): {e}") from None
        for el in self.doc.getElementsByType(P) + self.doc.getElementsByType(H):
            runs = [c for c in el.childNodes if _is_run(c)]
            self._add(runs, [_text(c) for c in runs], run, lang)

    @staticmethod
    def _set(r, text: str) -> None:
        if r.nodeType == r.TEXT_NODE:
            r.data = text
            return
        # a span: its first text node holds the text (odfpy removes elements only, not text nodes)
        nodes = [c for c in r.childNodes if c.nodeType == c.TEXT_NODE]
        for c in [c for c in r.childNodes if c.nodeType != c.TEXT_NODE]:
            r.removeChild(c)
        for j, c in enumerate(nodes):
            c.data = text if j == 0 else ""
        if not nodes:
            r.addText(text)


def _is_run(node) -> bool:
    """A paragraph's child that is text: a text node, or a span of text (and spaces) only."""
    if node.nodeType == node.TEXT_NODE:
        return True
    return (
        isinstance(node, Element)
        and node.qname == Span().qname
        and all(c.nodeType == c.TEXT_NODE or (isinstance(c, Element) and c.qname == S().qname) for c in node.childNodes)
    )


def _text(node) -> str:
    return str(node.data) if node.nodeType == node.TEXT_NODE else teletype.extractText(node)
