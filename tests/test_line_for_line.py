"""Files translated line for line (issue 35): N lines in, N lines out, in `mtx translate --input` (stdout or
--output) and through the server; blank lines, leading and trailing spaces and CRLF line ends kept; a long line
cut into sentences by the segmenter and joined again."""

from __future__ import annotations

import json

import pytest
from test_cli import _one_line_error, run
from test_markup import _download, _file
from test_serve import Running, _call, _post, loaded  # noqa: F401  (the tiny model's translator, a fixture)

from mtx.documents.segment import split_sentences
from mtx.serve.service import Limits, Service


@pytest.fixture(scope="module")
def sentences(tiny_corpus) -> list[str]:
    return (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()


def _long_line(sentences: list[str]) -> str:
    """Over 3,000 characters: the test sentences again and again, one space between them."""
    out = []
    while len(" ".join(out)) <= 3000:
        out += sentences
    return " ".join(out)


def _document(sentences: list[str]) -> tuple[str, list[str]]:
    """A file's text with every kind of line (CRLF ends, one line without CR, no end at the last line), and
    what each of its lines holds: its sentences with their spaces."""
    long = _long_line(sentences)
    rows = [f"{sentences[0]}   ", "", f"  {sentences[1]} {sentences[2]}", "\t", long, sentences[3]]
    return "\r\n".join(rows[:3]) + "\r\n" + rows[3] + "\n" + "\r\n".join(rows[4:]), rows


def _expected(loaded, rows: list[str]) -> list[str]:  # noqa: F811
    """Each row with its sentences translated one by one (the segmenter's sentences), joined by a space."""
    out = []
    for row in rows:
        found = split_sentences(row, "de")
        if not found:
            out.append(row)
            continue
        lead, trail = row[: len(row) - len(row.lstrip())], row[len(row.rstrip()) :]
        out.append(lead + " ".join(t.text for t in loaded.translate(found)) + trail)
    return out


def test_a_file_is_translated_line_for_line(tiny_model, loaded, sentences, tmp_path):  # noqa: F811
    text, rows = _document(sentences)
    assert len(rows[4]) > 3000 and len(split_sentences(rows[4], "de")) > 100
    src = tmp_path / "doc.de"
    src.write_bytes(text.encode("utf-8"))
    want = _expected(loaded, rows)
    out = tmp_path / "doc.en"
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--beam", 2, "--input", src, "--output", out)
    assert r.exit_code == 0, r.output
    got = out.read_bytes().decode("utf-8")
    ends = ["\r\n", "\r\n", "\r\n", "\n", "\r\n", ""]  # the source's own line ends, none after the last line
    assert got == "".join(w + e for w, e in zip(want, ends, strict=True))
    assert len(got.splitlines()) == len(text.splitlines()) == 6
    # stdout: the same lines, a CR kept before each CRLF line's end (bytes: click's `stdout` drops CRs)
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--beam", 2, "--input", src)
    lines = [w + ("\r" if e == "\r\n" else "") + "\n" for w, e in zip(want, ends, strict=True)]
    assert r.stdout_bytes.decode("utf-8") == "".join(lines)
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--beam", 2, "--input", src, "--json")
    records = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["translation"] for x in records] == want
    assert records[1]["confidence"] == 1.0 and 0 < records[4]["confidence"] < 1


def test_the_long_lines_sentences_are_those_of_its_translations(tiny_model, loaded, sentences):  # noqa: F811
    """A line of two sentences is two translations joined, not one translation of the whole line."""
    line = f"{sentences[0]} {sentences[1]}"
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--beam", 2, line)
    assert r.stdout == " ".join(t.text for t in loaded.translate(sentences[:2])) + "\n"
    assert r.stdout != loaded.translate([line])[0].text + "\n"


def test_output_refuses_the_input_itself_and_a_missing_folder(tiny_model, sentences, tmp_path):
    src = tmp_path / "doc.de"
    src.write_text(sentences[0] + "\n", encoding="utf-8")
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--input", src, "--output", src)
    _one_line_error(r, 2, "the input file itself")
    assert src.read_text(encoding="utf-8") == sentences[0] + "\n"  # nothing lost
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--input", src, "--output", tmp_path / "no" / "x")
    _one_line_error(r, 2, "no directory")


def test_a_failed_translation_leaves_the_output_as_it_was(tiny_model, sentences, tmp_path):
    src = tmp_path / "doc.de"
    src.write_bytes(sentences[0].encode() + b"\n\xff\n")  # line 2: not UTF-8
    out = tmp_path / "doc.en"
    out.write_text("kept\n", encoding="utf-8")
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--input", src, "--output", out)
    _one_line_error(r, 1, f"{src}:2", "UTF-8")
    assert out.read_text(encoding="utf-8") == "kept\n" and [p.name for p in tmp_path.iterdir()] == ["doc.de", "doc.en"]


def test_the_server_keeps_the_lines_too_and_translate_file(loaded, sentences):  # noqa: F811
    text, rows = _document(sentences)
    want = _expected(loaded, rows)
    with Running(Service(loaded, [("de", "en")], Limits(max_chars=20_000, max_sentences=512, wait_ms=1))) as r:
        status, out = _post(r.port, {"q": text, "source": "de", "target": "en"})
        assert status == 200, out
        status, sent = _call(r.port, "/translate_file", *_file("doc.txt", text.encode(), source="de", target="en"))
        assert status == 200, sent
        as_file = _download(sent["translatedFileUrl"])[0]
    got = out["translatedText"]
    assert got.split("\n") == [w + ("\r" if i in (0, 1, 2, 4) else "") for i, w in enumerate(want)]
    assert as_file == got


def test_a_lines_confidence_is_its_least_sure_sentences(tiny_model, loaded, sentences):  # noqa: F811
    line = f"{sentences[0]} Katze hund katze hund dort hier. {sentences[1]}"
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--beam", 2, "--json", line)
    got = json.loads(r.stdout)
    parts = loaded.translate(split_sentences(line, "de"))
    assert len(parts) == 3 and got["confidence"] == round(min(t.confidence for t in parts), 4)
    assert got["confidence"] < round(max(t.confidence for t in parts), 4)


def test_a_line_with_a_prefix_is_one_unit(tiny_model, loaded, sentences, tmp_path):  # noqa: F811
    """What is asked of a line (its --prefix-file line) keeps the line whole: one translation starting with it,
    and the next line its own."""
    src, heads = tmp_path / "in.de", tmp_path / "heads.en"
    line = f"{sentences[0]} {sentences[1]}"
    src.write_text(f"{line}\n{sentences[2]}\n", encoding="utf-8")
    heads.write_text("A\n\n", encoding="utf-8")
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--beam", 2, "--input", src, "--prefix-file", heads)
    assert r.exit_code == 0, r.output
    want = loaded.translate([line, sentences[2]], target_prefix=["A", ""])
    assert r.stdout.splitlines() == [t.text for t in want] and want[1].text
