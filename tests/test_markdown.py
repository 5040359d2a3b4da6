"""Markdown (mtx/documents/markdown.py): headings, paragraphs, list items, quotes and table cells translated, their
markers kept; code blocks, code spans and link and image targets untouched; through `mtx translate --input` and
`/translate_file`."""

from __future__ import annotations

from fakes import FunctionTranslator
from test_cli import run
from test_markup import _download, _file
from test_serve import Running, _call
from test_subtitles import _upper

from mtx.documents.formats import make_document
from mtx.serve.service import Limits, Service

MD = (
    "# Ein Hund\r\n\r\n"
    'Ein **großer** Hund rennt über [die Wiese](http://example.com/die_wiese "Die Wiese").\r\n'
    "Er spielt mit `ball_werfen()` und ![einem Kind](kind.png).\r\n\r\n"
    "- Ein Mann fährt.\r\n  1. Zwei Frauen lachen.\r\n\r\n"
    '```python\r\nprint("Ein Hund")  # nicht übersetzt\r\n```\r\n\r\n'
    "    eingerückter Code\r\n\r\n"
    "> Eine Frau sieht zu.\r\n\r\n"
    "| Tier | Farbe |\r\n|---|---|\r\n| Ein Hund | braun |\r\n"
)


def test_markdown_keeps_its_structure_code_and_targets():
    doc = make_document(MD, "md", "de")
    assert "print" not in " ".join(doc.sentences) and "ball_werfen" not in " ".join(doc.sentences)
    out = _upper(doc).split("\r\n")
    assert out[0] == "# EIN HUND" and out[1] == ""
    # (no alignment here: tags placed by position; the server's test below aligns word for word)
    assert out[2].startswith("EIN **GROSSER** HUND RENNT ÜBER ") and "ER SPIELT MIT" in out[2]
    assert '](http://example.com/die_wiese "Die Wiese")' in out[2] and "`ball_werfen()`" in out[2]
    assert "![einem Kind](kind.png)" in out[2]
    assert out[3:9] == ["", "- EIN MANN FÄHRT.", "  1. ZWEI FRAUEN LACHEN.", "", "```python", 'print("Ein Hund")  '
                        "# nicht übersetzt"]  # fmt: skip
    assert out[9:13] == ["```", "", "    eingerückter Code", ""]
    assert out[13] == "> EINE FRAU SIEHT ZU."
    assert out[15:18] == ["| TIER | FARBE |", "|---|---|", "| EIN HUND | BRAUN |"]
    assert len(out) == len(MD.split("\r\n")) - 1  # the paragraph's second line joined its first


def test_translate_file_and_input_md(tiny_model, tmp_path):
    with Running(Service(FunctionTranslator(str.upper), [("de", "en")], Limits(wait_ms=1))) as r:
        status, out = _call(r.port, "/translate_file", *_file("a.md", MD.encode(), source="de", target="en"))
        assert status == 200, out
        body = _download(out["translatedFileUrl"])[0]
    assert "ÜBER [DIE WIESE](http://example.com/die_wiese" in body  # aligned word for word: the link's words
    assert body.startswith("# EIN HUND\r\n") and '```python\r\nprint("Ein Hund")' in body
    src = tmp_path / "readme.md"
    src.write_bytes(MD.encode("utf-8"))
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--input", src, "--output", tmp_path / "en.md")
    assert r.exit_code == 0, r.output
    got = (tmp_path / "en.md").read_bytes().decode("utf-8")
    assert '```python\r\nprint("Ein Hund")  # nicht übersetzt\r\n```' in got and "(kind.png)" in got
    assert got.startswith("# ") and "\r\n| " in got and got.endswith("|\r\n")
