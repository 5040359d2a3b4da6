"""Word and OpenDocument documents (mtx/documents/office.py): paragraphs, headings, table cells, headers
translated, each run keeping its style (the bold word's translation is bold); a file that is not one is one line;
through `mtx translate --input` (into --output) and `/translate_file`."""

from __future__ import annotations

import io
import urllib.request
import zipfile

import pytest
from docx import Document
from fakes import FunctionTranslator
from odf import teletype
from odf.opendocument import OpenDocumentText
from odf.opendocument import load as load_odt
from odf.style import Style, TextProperties
from odf.text import H, P, Span
from test_cli import _one_line_error, run
from test_markup import _file
from test_serve import Running, _call

from mtx.serve.service import Limits, Service


def _docx() -> bytes:
    d = Document()
    d.add_heading("Ein Hund", 1)
    p = d.add_paragraph("Ein ")
    p.add_run("großer").bold = True
    p.add_run(" Hund rennt. Eine Frau sieht zu.")
    d.add_paragraph("")
    t = d.add_table(rows=1, cols=2)
    t.cell(0, 0).text = "Ein Kind lacht."
    t.cell(0, 1).text = "Zwei Hunde."
    d.sections[0].header.paragraphs[0].text = "Eine Katze schläft."
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


def _download_bytes(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def test_a_docx_through_the_server_keeps_its_styles():
    with Running(Service(FunctionTranslator(str.upper), [("de", "en")], Limits(wait_ms=1))) as r:
        status, out = _call(r.port, "/translate_file", *_file("a.docx", _docx(), source="de", target="en"))
        assert status == 200, out
        d = Document(io.BytesIO(_download_bytes(out["translatedFileUrl"])))
        status, bad = _call(r.port, "/translate_file", *_file("b.docx", b"not a zip", source="auto", target="en"))
    assert [p.style.name for p in d.paragraphs] == ["Heading 1", "Normal", "Normal"]
    assert d.paragraphs[0].text == "EIN HUND"
    runs = [(x.text, x.bold) for x in d.paragraphs[1].runs]
    assert "".join(t for t, _ in runs) == "EIN GROSSER HUND RENNT. EINE FRAU SIEHT ZU."
    assert [t.strip() for t, b in runs if b] == ["GROSSER"]  # aligned word for word: the bold word's translation
    assert [c.text for c in d.tables[0].rows[0].cells] == ["EIN KIND LACHT.", "ZWEI HUNDE."]
    assert d.sections[0].header.paragraphs[0].text == "EINE KATZE SCHLÄFT."
    assert status == 400 and "not a Word document" in bad["error"]


def test_translate_input_docx(tiny_model, tmp_path):
    src = tmp_path / "a.docx"
    src.write_bytes(_docx())
    _one_line_error(run("translate", "--model", tiny_model, "--input", src), 2, "add --output")
    out = tmp_path / "en.docx"
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--input", src, "--output", out)
    assert r.exit_code == 0, r.output
    d = Document(str(out))
    assert [p.style.name for p in d.paragraphs] == ["Heading 1", "Normal", "Normal"]
    assert d.paragraphs[1].text != Document(str(src)).paragraphs[1].text and d.paragraphs[1].text.strip()
    bad = tmp_path / "b.docx"
    bad.write_bytes(b"PK not really")
    _one_line_error(run("translate", "--model", tiny_model, "--input", bad, "--output", out), 1, f"{bad}:")
    assert Document(str(out)).paragraphs[0].text == d.paragraphs[0].text  # the earlier output kept


def _odt() -> bytes:
    doc = OpenDocumentText()
    bold = Style(name="B", family="text")
    bold.addElement(TextProperties(fontweight="bold"))
    doc.automaticstyles.addElement(bold)
    doc.text.addElement(H(outlinelevel=1, text="Ein Hund"))
    p = P(text="Ein ")
    p.addElement(Span(stylename=bold, text="großer"))
    p.addText(" Hund rennt. Eine Frau sieht zu.")
    doc.text.addElement(p)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def test_an_odt_through_the_server_keeps_its_styles(tmp_path):
    with Running(Service(FunctionTranslator(str.upper), [("de", "en")], Limits(wait_ms=1))) as r:
        status, out = _call(r.port, "/translate_file", *_file("a.odt", _odt(), source="de", target="en"))
        assert status == 200, out
        d = load_odt(io.BytesIO(_download_bytes(out["translatedFileUrl"])))
        status, bad = _call(r.port, "/translate_file", *_file("b.odt", b"not a zip", source="de", target="en"))
    assert [teletype.extractText(h) for h in d.getElementsByType(H)] == ["EIN HUND"]
    (p,) = d.getElementsByType(P)
    parts = [(c.getAttribute("stylename") if c.nodeType == c.ELEMENT_NODE else None, str(teletype.extractText(c))
              if c.nodeType == c.ELEMENT_NODE else str(c)) for c in p.childNodes]  # fmt: skip
    assert "".join(t for _, t in parts) == "EIN GROSSER HUND RENNT. EINE FRAU SIEHT ZU."
    assert [t.strip() for s, t in parts if s == "B"] == ["GROSSER"]
    assert status == 400 and "not an OpenDocument text" in bad["error"]


def test_a_zip_that_unpacks_to_too_much_is_refused_before_parsing(monkeypatch):
    """A small upload whose zip says it unpacks past the bound is refused from the zip's directory alone."""
    from mtx.documents import office

    monkeypatch.setattr(office, "MAX_UNZIPPED", 1000)
    with pytest.raises(office.OfficeError, match="unpacks to .* bytes: over the limit of 1000"):
        office.DocxDocument(_docx(), "de", None)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("content.xml", b"<a>" + b" " * 200_000 + b"</a>")  # 200 KB unpacked from a few hundred bytes
    assert len(bomb.getvalue()) < 2000
    with pytest.raises(office.OfficeError, match="over the limit"):
        office.OdtDocument(bomb.getvalue(), "de", None)
