"""Subtitles (mtx/documents/subtitles.py): a .srt or .vtt file comes back with the same structure (numbers,
identifiers, timings and their settings, header, NOTE and STYLE blocks, blank lines, line ends), each cue's text
translated over as many lines as it had; a file that is not subtitles is one line naming its line. Through
`mtx translate --input` and `/translate_file`."""

from __future__ import annotations

import pytest
from fakes import FunctionTranslator
from test_cli import _one_line_error, run
from test_markup import _download, _file
from test_serve import Running, _call, loaded  # noqa: F401  (the tiny model's translator, a fixture)

from mtx.documents.formats import make_document
from mtx.documents.subtitles import SubtitleDocument, SubtitleError, _balanced
from mtx.serve.service import Limits, Service

SRT = (
    "1\r\n00:00:01,000 --> 00:00:04,000\r\nEin großer Hund rennt\r\nüber die Wiese.\r\n\r\n"
    "2\r\n00:00:05,000 --> 00:00:07,500\r\nZwei Hunde spielen. Eine Frau sieht zu.\r\n\r\n"
    "3\r\n00:01:00,000 --> 00:01:02,000\r\n\r\n"  # a cue without text
)
VTT = (
    "WEBVTT - a header\nKind: captions\n\nNOTE kept as it is\nEin Hund.\n\nSTYLE\n::cue { color: red }\n\n"
    "intro\n00:01.000 --> 00:04.000 line:0 align:start\nEin Kind lacht.\n\n"
    "00:05.000 --> 00:06.000\n<v Anna>Eine Katze schläft.\n"
)


def _upper(doc) -> str:
    """A document with each sentence "translated" into capitals."""
    return doc.render([s.upper() for s in doc.sentences])


def test_an_srt_keeps_its_structure_and_each_cue_its_lines():
    doc = make_document(SRT, "srt", "de")
    assert doc.sentences == ["Ein großer Hund rennt über die Wiese.", "Zwei Hunde spielen.", "Eine Frau sieht zu."]
    out = _upper(doc).split("\r\n")
    src = SRT.split("\r\n")
    assert [r for i, r in enumerate(out) if i not in (2, 3, 7)] == [r for i, r in enumerate(src) if i not in (2, 3, 7)]
    assert out[2:4] == ["EIN GROSSER HUND", "RENNT ÜBER DIE WIESE."]  # two lines of about even length
    assert out[7] == "ZWEI HUNDE SPIELEN. EINE FRAU SIEHT ZU."


def test_a_vtt_keeps_its_header_notes_styles_identifiers_and_settings():
    doc = make_document(VTT, "vtt", "de")
    assert doc.sentences == ["Ein Kind lacht.", "<v Anna>Eine Katze schläft."]
    want = VTT.replace("Ein Kind lacht.", "EIN KIND LACHT.").replace("<v Anna>Eine", "<V ANNA>EINE")
    assert _upper(doc) == want.replace("Katze schläft.", "KATZE SCHLÄFT.")


@pytest.mark.parametrize(
    "text, kind, line, words",
    [
        ("1\nEin Hund.\n", "srt", 1, "timing line"),
        ("1\n00:00:01,000 --> 00:00:02,000\nA.\n\n00:00:03,000 --> 00:00:04,000\nB.\n", "srt", 5, "its number"),
        ("1\n00:00:01,000 --> 00:00:02,000\nA.\nB.\n\n00:00:03,000 --> 00:00:04,000\nC.\n", "srt", 6, "its number"),
        ("NOTE not in SubRip\n\n1\n00:00:01,000 --> 00:00:02,000\nA.\n", "srt", 1, "timing line"),
        ("00:01.000 --> 00:02.000\nA.\n", "vtt", 1, "starts with WEBVTT"),
        ("WEBVTT\n\n00:01.000 --> 00:02.000\nA.\n\nB.\nC.\n", "vtt", 6, "timing line"),
        ("WEBVTT\n\nid\nmore\n00:01.000 --> 00:02.000\nA.\n", "vtt", 3, "timing line"),  # first or second
    ],
)
def test_what_is_not_subtitles_names_its_line(text, kind, line, words):
    with pytest.raises(SubtitleError, match=words) as e:
        SubtitleDocument(text, "de", kind)
    assert e.value.line == line


def test_translate_input_srt(tiny_model, loaded, tmp_path):  # noqa: F811
    src = tmp_path / "film.srt"
    src.write_bytes(SRT.encode("utf-8"))
    out = tmp_path / "film.en.srt"
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--beam", 2, "--input", src, "--output", out)
    assert r.exit_code == 0, r.output
    got = out.read_bytes().decode("utf-8")
    doc = SubtitleDocument(SRT, "de", "srt")
    assert got == doc.render([t.text for t in loaded.translate(doc.sentences)])
    assert got.split("\r\n")[:2] == ["1", "00:00:01,000 --> 00:00:04,000"] and got.endswith("\r\n\r\n")
    bad = tmp_path / "bad.srt"
    bad.write_text("1\nEin Hund.\n", encoding="utf-8")
    _one_line_error(run("translate", "--model", tiny_model, "--device", "cpu", "--input", bad), 1, f"{bad}:1:")
    _one_line_error(run("translate", "--model", tiny_model, "--input", src, "--nbest", 2), 2, "whole srt file")


def test_translate_input_html_keeps_the_page(tiny_model, tmp_path):
    page = tmp_path / "p.html"
    page.write_text("<p>Ein <b>Hund</b> rennt.</p>\n<pre>Ein Hund.</pre>\n", encoding="utf-8")
    r = run("translate", "--model", tiny_model, "--device", "cpu", "--input", page)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("<p>") and "<b>" in r.stdout and "<pre>Ein Hund.</pre>" in r.stdout


def test_translate_file_srt_and_vtt():
    with Running(Service(FunctionTranslator(str.upper), [("de", "en")], Limits(wait_ms=1))) as r:
        for name, text in (("a.srt", SRT), ("a.vtt", VTT)):
            status, out = _call(r.port, "/translate_file", *_file(name, text.encode(), source="de", target="en"))
            assert status == 200, out
            body = _download(out["translatedFileUrl"])[0]
            doc = make_document(text, name[-3:], "de")
            assert body == _upper(doc)
        status, out = _call(r.port, "/translate_file", *_file("b.vtt", b"Ein Hund.\n", source="de", target="en"))
        assert status == 400 and "not vtt subtitles: line 1" in out["error"]


def _over(text: str, n: int) -> list[str]:
    return _balanced(text.split(), n)


def test_a_cues_words_go_over_its_lines_evenly():
    """Each line takes words while the next one's middle stays within the line's share of the characters."""
    assert _over("aaaa bb cccccc", 2) == ["aaaa bb", "cccccc"]
    assert _over("aaa bbbbb cccc ddddd eee f", 2) == ["aaa bbbbb cccc", "ddddd eee f"]  # cccc's middle fits
    assert _over("ccc dddd eee fffff gg", 2) == ["ccc dddd eee", "fffff gg"]  # 12 and 8 characters
    assert _over("a bbb c d e ffffff", 2) == ["a bbb c d", "e ffffff"]
    assert _over("aaaa bbbbbb cc dd eeeee ff", 2) == ["aaaa bbbbbb cc", "dd eeeee ff"]
    assert _over("aa bbbbb ccccc dd eeee f", 2) == ["aa bbbbb ccccc", "dd eeee f"]
    assert _balanced(["aaaaaa"], 2) == ["aaaaaa", ""]  # fewer words than lines: the last lines empty
    assert _over("a b c", 1) == ["a b c"]


def test_a_long_file_without_a_last_line_end():
    cues = [f"{k}\n00:00:{k % 60:02d},000 --> 00:00:{k % 60:02d},500\nEin Hund." for k in range(1, 101)]
    cues[49] = cues[49].removesuffix("\nEin Hund.")  # a cue without text among them
    text = "\n\n".join(cues)  # 398 lines, the last one without its line end
    doc = SubtitleDocument(text, "de", "srt")
    assert len(doc.sentences) == 99
    assert doc.render([s.upper() for s in doc.sentences]) == text.replace("Ein Hund.", "EIN HUND.")
