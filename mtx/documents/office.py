"""Word documents (.docx, python-docx): every paragraph of the body, its tables (nested ones too) and the sections'
headers and footers translated, each paragraph's text runs keeping their own styles. A paragraph is translated as
an HTML run is (formats.HtmlDocument): each text run becomes an inline element, placed back by the model's
alignment, so a bold word's translation is the bold one. Everything else in the file (styles, images, fields,
numbering, hyperlinks' own text) is written back as it was."""

from __future__ import annotations

import html
import io
import zipfile

from bs4 import BeautifulSoup, NavigableString, Tag
from docx import Document
from docx.opc.exceptions import PackageNotFoundError


class OfficeError(ValueError):
    """A file that is not the document its name says."""


def _paragraphs(container):
    """Every paragraph of a body, a cell or a header: its own, then those of its tables (and theirs)."""
    yield from container.paragraphs
    for table in getattr(container, "tables", []):
        for row in table.rows:
            for cell in row.cells:
                yield from _paragraphs(cell)


class DocxDocument:
    needs_alignment = True

    def __init__(self, data: bytes, lang: str, run):
        """`run(html, lang)`: a run's document (formats.HtmlDocument)."""
        try:
            self.doc = Document(io.BytesIO(data))
        except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as e:
            raise OfficeError(f"not a Word document (.docx): {e}") from None
        containers = [self.doc]
        for section in self.doc.sections:
            containers += [section.header, section.footer]
        self.paras: list[tuple[list, object]] = []  # (the paragraph's runs, its HTML run's document)
        self.sentences: list[str] = []
        seen = set()
        for c in containers:
            for p in _paragraphs(c):
                if id(p._p) in seen:  # a merged cell repeats its paragraphs
                    continue
                seen.add(id(p._p))
                runs = [r for r in p.runs if r.text]
                if not "".join(r.text for r in runs).strip():
                    continue
                spans = "".join(f'<span id="r{k}">{html.escape(r.text)}</span>' for k, r in enumerate(runs))
                doc = run(f"<p>{spans}</p>", lang)
                self.paras.append((runs, doc))
                self.sentences += doc.sentences

    def render(self, translations: list[str], alignments: list | None = None) -> bytes:
        k = 0
        for runs, doc in self.paras:
            n = len(doc.sentences)
            page = doc.render(translations[k : k + n], alignments[k : k + n] if alignments else None)
            k += n
            texts = [""] * len(runs)
            at = 0
            p = BeautifulSoup(page, "html.parser").find("p")
            for node in p.children if p is not None else []:
                if isinstance(node, Tag) and node.get("id", "").startswith("r"):
                    at = int(node["id"][1:])
                    texts[at] += node.get_text()
                elif isinstance(node, NavigableString | Tag):
                    texts[at] += node.get_text() if isinstance(node, Tag) else str(node)
            for r, text in zip(runs, texts, strict=True):
                r.text = text
        out = io.BytesIO()
        self.doc.save(out)
        return out.getvalue()
