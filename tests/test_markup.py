"""`format: "html"` (mtx/documents/markup.py) and `POST /translate_file`: runs translated as sentences across inline
tags, every tag, attribute, entity and kept element written back, through the server too. A dictionary stands in
for the model, so the expected pages are known."""

from __future__ import annotations

import re
import urllib.request

import pytest
from fakes import FunctionTranslator, diagonal
from test_serve import Running, _call, _post

from mtx.documents.markup import HtmlPage
from mtx.documents.segment import split_sentences
from mtx.serve.service import Limits, Service

WORDS = {"ein": "a", "großer": "big", "hund": "dog", "rennt": "runs", "über": "across", "die": "the",
         "wiese": "meadow", "schwarzer": "black", "katze": "cat", "und": "and", "schläft": "sleeps"}  # fmt: skip


def translate(text: str) -> str:
    """Word by word through WORDS (unknown words upper-cased), punctuation kept."""
    out = []
    for w in text.split():
        core, tail = re.match(r"(.*?)([.,!?]*)$", w).groups()
        out.append(WORDS.get(core.lower(), core.upper()) + tail)
    return " ".join(out)


# fmt: off
PAGE = """<!DOCTYPE html>
<html lang="de"><head><title>Ein Hund</title>
<style>p > b { color: red; }</style>
<script>if (a && b) { x = "&amp; <b>Hund</b>"; }</script></head>
<body>
  <p class="x" data-k="1&amp;2">Ein <b>großer <i>schwarzer</i> Hund</b> rennt &uuml;ber
    <a href="/w?a=1&amp;b=2" title="Wiese">die Wiese</a>.</p>
  <p>Die Katze&nbsp;schläft<br>Katze &amp; Hund &nbsp;</p>
  <div>Ein <code>Hund &lt; Katze</code> rennt <!-- Hund --> über die Wiese.
    <ul><li>Katze</li><li translate="no">Hund</li><li class="notranslate">Katze</li></ul></div>
  <pre>Ein   Hund</pre>
  <p><img src="a.png" alt="Hund"> Hund</p>
</body></html>"""

EXPECTED = """<!DOCTYPE html>
<html lang="de"><head><title>a dog</title>
<style>p > b { color: red; }</style>
<script>if (a && b) { x = "&amp; <b>Hund</b>"; }</script></head>
<body>
  <p class="x" data-k="1&amp;2">a <b>big <i>black</i> dog</b> runs across
    <a href="/w?a=1&amp;b=2" title="Wiese">the meadow</a>.</p>
  <p>the cat sleeps<br>cat &amp; dog &nbsp;</p>
  <div>a <code>Hund &lt; Katze</code> runs <!-- Hund --> across the meadow.
    <ul><li>cat</li><li translate="no">Hund</li><li class="notranslate">Katze</li></ul></div>
  <pre>Ein   Hund</pre>
  <p><img src="a.png" alt="Hund"> dog</p>
</body></html>""".replace("across\n    <a", "across <a")  # a run's whitespace: one space
# fmt: on


def _replaced(text: str, changes: dict[str, str]) -> str:
    for a, b in changes.items():
        text = text.replace(a, b)
    return text


def _render(page: HtmlPage, fn) -> str:
    outs = [fn(t) for t in page.texts]
    return page.render(outs, [diagonal(t, o) for t, o in zip(page.texts, outs, strict=True)])


def test_a_page_round_trips_with_its_text_translated():
    page = HtmlPage(PAGE)
    # a sentence across inline tags is one text
    assert "Ein großer schwarzer Hund rennt über die Wiese." in page.texts
    assert not any("if (a" in t or "Hund < Katze" in t or t == "Ein   Hund" for t in page.texts)
    assert _render(page, translate) == EXPECTED
    # each text into itself: the page as it was, but for entities and whitespace inside translated text
    same = HtmlPage(PAGE)
    untranslated = {"Katze&nbsp;schläft": "Katze schläft", "&uuml;ber\n    <a": "über <a"}
    assert _render(same, str) == _replaced(PAGE, untranslated)


def test_tags_follow_the_alignment_and_fall_back_to_their_place():
    """Words reordered by the translation: the tag wraps the word aligned to its text; without alignments, or
    when none of its words is aligned, it wraps the words at its relative place."""
    page = HtmlPage('<p>Ein <b id="k">Hund</b> rennt.</p>')
    assert page.texts == ["Ein Hund rennt."]
    out = page.render(["Runs a dog."], [[(0, 9), (5, 0), (7, 4)]])  # runs <- rennt, a <- Ein, dog <- Hund
    assert out == '<p>Runs a <b id="k">dog</b>.</p>'
    out = HtmlPage('<p>Ein <b id="k">Hund</b> rennt.</p>').render(["One two three four."])
    assert out.startswith("<p>") and out.count('<b id="k">') == 1 and out.count("</b>") == 1
    assert re.sub(r"<[^>]+>", "", out) == "One two three four."
    assert HtmlPage("<p> </p><script>x</script>").texts == []  # nothing to translate: nothing asked


def test_a_long_bold_paragraph_keeps_its_tag_around_every_word():
    """A bold paragraph of 400 words (item 1 of issue 31: the former placement took 27.6 s for 104 words; the cost
    now: `python scripts/html_cost.py`, docs/deploy.md)."""
    words = " ".join(["Hund"] * 400)
    placed = _render(HtmlPage(f"<p><b>{words}.</b> Ende.</p>"), translate)
    assert placed == f"<p><b>{' '.join(['dog'] * 400)}.</b> ENDE.</p>"


@pytest.fixture(scope="module")
def words():
    service = Service(
        FunctionTranslator(translate), [("de", "en")], Limits(max_chars=2000, max_sentences=64, wait_ms=1)
    )
    with Running(service) as r:
        yield r


def test_format_html_through_the_server(words):
    status, out = _post(words.port, {"q": PAGE, "source": "de", "target": "en", "format": "html"})
    assert status == 200 and out == {
        "translatedText": EXPECTED,
        "confidence": 0.125,
    }  # its least sure sentence: 8 words
    status, out = _post(words.port, {"q": [PAGE, "<b>Hund</b>"], "source": "de", "target": "en", "format": "html"})
    assert status == 200 and out["translatedText"] == [EXPECTED, "<b>dog</b>"]
    status, out = _post(words.port, {"q": "x", "source": "de", "target": "en", "format": "pdf"})
    assert status == 400 and "text or html" in out["error"]


def _file(name: str, content: bytes, **fields) -> tuple[bytes, str]:
    cut = "mtx-file-boundary"
    parts = [
        f'--{cut}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    head = f'--{cut}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
    parts.append(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n")
    return b"".join(parts) + f"--{cut}--\r\n".encode(), f"multipart/form-data; boundary={cut}"


def _download(url: str) -> tuple[str, str, str]:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read().decode("utf-8"), r.headers["Content-Type"], r.headers["Content-Disposition"]


def test_translate_file_txt_and_html(words):
    text = "Ein Hund rennt. Die Katze schläft.\nEin großer Hund.\n"
    status, out = _call(words.port, "/translate_file", *_file("notes.txt", text.encode(), source="de", target="en"))
    assert status == 200 and out["translatedFileUrl"].endswith("/notes.txt")
    body, ctype, disposition = _download(out["translatedFileUrl"])
    lines = [[translate(s) for s in split_sentences(line)] for line in text.split("\n")]
    assert body == "\n".join(" ".join(x) for x in lines) and ctype.startswith("text/plain")
    assert "notes.txt" in disposition
    status, out = _call(words.port, "/translate_file", *_file("Seite.html", PAGE.encode(), source="de", target="en"))
    assert status == 200 and _download(out["translatedFileUrl"])[:2] == (EXPECTED, "application/octet-stream")
    for name, content, status, word in [
        ("a.pdf", b"x", 400, "the files translated are .txt, .html, .htm, .srt, .vtt, .md, .docx, .odt"),
        ("a.txt", b"\xff\xfe", 400, "not UTF-8"),
        ("a.txt", b"Hund. " * 400, 413, "characters"),
    ]:
        got = _call(words.port, "/translate_file", *_file(name, content, source="de", target="en"))
        assert got[0] == status and word in got[1]["error"], got
    assert _call(words.port, "/translate_file", b'{"q": "x"}')[0] == 400  # no file
    assert _call(words.port, "/download_file/nope/a.txt")[0] == 404
    status, out = _call(words.port, "/frontend/settings")
    assert out["filesTranslation"] is True and ".html" in out["supportedFilesFormat"]


@pytest.mark.parametrize(
    "page, translation, alignment, want",
    [
        # no alignment (an engine without one): the element takes the words at its relative place
        ("<p>Ein <b>Hund</b> rennt schnell.</p>", "A dog runs fast.", None, "<p>A <b>dog</b> runs fast.</p>"),
        # an alignment that puts none of the element's words inside it: by position too
        ("<p>Ein <b>Hund</b> rennt schnell.</p>", "A dog runs fast.", [(0, 0), (2, 0), (6, 0), (11, 0)],
         "<p>A <b>dog</b> runs fast.</p>"),
        # an opaque element keeps its place among the words
        ('<p>Ein Hund <img src="a.png"> rennt.</p>', "A dog runs.", [(0, 0), (2, 4), (6, 9)],
         '<p>A dog <img src="a.png"> runs.</p>'),
        # an element that ends a sentence takes its full stop; the next sentence stays outside
        ("<p><b>Ein Hund rennt.</b> Die Katze schläft.</p>", "A dog runs. The cat sleeps.",
         [(0, 0), (2, 4), (6, 9), (12, 17), (16, 21), (20, 27)], "<p><b>A dog runs.</b> The cat sleeps.</p>"),
        # siblings, each after the one before
        ("<p>Ein <i>großer</i> <b>Hund</b> rennt.</p>", "A big dog runs.", [(0, 0), (2, 4), (6, 11), (10, 16)],
         "<p>A <i>big</i> <b>dog</b> runs.</p>"),
        # an element glued to the punctuation before it stays glued
        ("<p>Ein (<b>Hund</b>) rennt.</p>", "A (dog) runs.", [(0, 0), (2, 4), (3, 5), (6, 9), (8, 11)],
         "<p>A (<b>dog</b>) runs.</p>"),
        # an empty element after glued punctuation: a space before it, as before any element that wraps no word
        ('<p>Ein, <a name="x"></a>Hund.</p>', "A, dog.", [(0, 0), (1, 3), (3, 5), (6, 9)],
         '<p>A, <a name="x"></a> dog.</p>'),
    ],
    ids=["no-alignment", "nothing-aligned-inside", "opaque", "full-stop", "siblings", "glued", "empty-after-comma"],
)  # fmt: skip
def test_placement_cases(page, translation, alignment, want):
    assert HtmlPage(page).render([translation], None if alignment is None else [alignment]) == want


def test_an_empty_element_stays_before_the_word_it_preceded():
    out = HtmlPage('<p>Ein <a name="x"></a>Hund rennt.</p>').render(["A dog runs."], [[(0, 0), (2, 4), (6, 9)]])
    assert out.count('<a name="x"></a>') == 1 and out.index("</a>") < out.index("dog")
    assert " ".join(re.sub(r"<[^>]+>", " ", out).split()) == "A dog runs."


def test_a_page_nested_as_deep_as_allowed_is_read_and_one_level_more_is_refused():
    from mtx.documents.markup import MAX_DEPTH, PageError

    assert MAX_DEPTH == 100
    deep = "<b>" * MAX_DEPTH + "Hund" + "</b>" * MAX_DEPTH  # the page itself is level 0
    assert HtmlPage(deep).texts == ["Hund"]
    with pytest.raises(PageError, match="more than 100 deep"):
        HtmlPage("<i>" + deep + "</i>")
    with pytest.raises(PageError):  # siblings do not add up: only the deepest branch counts
        HtmlPage("<p>a</p><div>" + "<i>" * MAX_DEPTH + "x" + "</i>" * MAX_DEPTH + "</div>")
    assert HtmlPage("<p>a</p>" * (MAX_DEPTH + 5)).texts == ["a"] * (MAX_DEPTH + 5)


@pytest.mark.parametrize(
    "page, want",
    [
        ("<p>\n  Ein <b>Hund</b></p>", "<p>\n  a <b>dog</b></p>"),  # whitespace before a run, as written
        ("<p>Ein <b>Hund</b> </p>", "<p>a <b>dog</b> </p>"),  # after it, a string of whitespace alone
        ("<p>&nbsp;Ein Hund &nbsp;</p>", "<p>&nbsp;a dog &nbsp;</p>"),
        (
            '<p>Ein <input type="checkbox" disabled> Hund <img title="t" src="s" alt=""></p>',
            '<p>a <input type="checkbox" disabled=""> dog <img title="t" src="s" alt=""></p>',
        ),  # attributes in order
    ],
)
def test_the_edges_of_a_run_and_boolean_attributes_are_written_as_they_were(page, want):
    assert _render(HtmlPage(page), translate) == want


def test_a_kept_block_inside_a_block_ends_the_run_and_a_kept_inline_element_stays_in_it():
    page = HtmlPage('<div>Ein Hund <div translate="no">Katze</div> rennt.</div>')
    assert page.texts == ["Ein Hund", "rennt."]
    assert _render(page, translate) == '<div>a dog <div translate="no">Katze</div> runs.</div>'
    page = HtmlPage('<p>Ein <span class="notranslate">Katze</span> rennt.</p>')
    assert page.texts == ["Ein rennt."]


def test_render_wants_one_translation_a_text_and_odd_characters_keep_their_spaces():
    page = HtmlPage("<p>Ein Hund.</p><p>Eine Katze.</p>")
    for wrong in (["a dog."], ["a dog.", "a cat.", "more"]):
        with pytest.raises(ValueError, match=f"2 texts, {len(wrong)} translations"):
            page.render(wrong)
    assert HtmlPage("<p>Ein\x01 Hund</p>").texts == ["Ein\x01 Hund"]  # a control character is not a space


def test_a_comment_at_the_end_of_a_run_adds_no_space():
    page = HtmlPage("<p>Ein Hund <!-- ein Hund --></p>")
    assert page.texts == ["Ein Hund"]
    assert _render(page, translate) == "<p>a dog <!-- ein Hund --></p>"


def test_a_page_of_many_runs_renders_each():
    page = HtmlPage("<p>Hund</p>" * 300)  # more texts than CPython caches small ints for
    assert page.render(["dog"] * 300) == "<p>dog</p>" * 300


def test_a_long_run_places_its_elements_past_cpythons_small_ints():
    """Word and character positions past 256 (CPython caches ints up to 256: an `is` on them fails there)."""
    words = " ".join(["Hund"] * 280)
    page = HtmlPage(f'<p>{words} <b>Katze</b> <a name="x"></a>Hund rennt.</p>')
    want = "<p>" + " ".join(["dog"] * 280) + ' <b>cat</b> <a name="x"></a> dog runs.</p>'
    assert _render(page, translate) == want
    page = HtmlPage(f"<p>{words} <b>Katze</b></p>")  # an element that ends the run, past word 256
    assert _render(page, translate) == "<p>" + " ".join(["dog"] * 280) + " <b>cat</b></p>"
    page = HtmlPage(f"<p>{words} <b>Katze.</b></p>")  # one that ends a sentence there, translated without a stop
    assert _render(page, lambda t: translate(t).rstrip(".")) == "<p>" + " ".join(["dog"] * 280) + " <b>cat</b></p>"
