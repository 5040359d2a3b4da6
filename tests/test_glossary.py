"""Glossaries (issue 34): the file's lines and its one-line errors; terms found at word boundaries, across case
as documented, multi-word across spaces, longest first, never overlapping."""

import pytest

from mtx.data.glossary import Glossary, read_glossary
from mtx.errors import MtxError


def _found(g: Glossary, sentence: str) -> list[tuple[str, str]]:
    return [(sentence[t.start : t.end], t.target) for t in g.find(sentence)]


def test_terms_are_found_at_word_boundaries_only():
    g = Glossary({"Hund": "hound", "Ball": "ball"})
    assert _found(g, "Der Hund, der den Ball fängt.") == [("Hund", "hound"), ("Ball", "ball")]
    assert _found(g, "Eine Hundehütte und ein Fußball.") == []  # inside a word: not the term
    assert _found(g, "(Hund)") == [("Hund", "hound")]
    assert _found(g, "Hund_2 Hund2 2Hund") == [("Hund", "hound")]  # an underscore is no letter: a boundary


def test_case_is_ignored_unless_the_term_has_a_capital_after_its_first_letter():
    g = Glossary({"hund": "hound", "EU": "EU", "iPhone": "iPhone"})
    assert _found(g, "HUND, Hund, hund") == [("HUND", "hound"), ("Hund", "hound"), ("hund", "hound")]
    assert _found(g, "eu Eu EU") == [("EU", "EU")]
    assert _found(g, "iphone IPHONE iPhone") == [("iPhone", "iPhone")]


def test_multi_word_terms_span_any_spaces_and_the_longest_wins():
    g = Glossary({"rote Ball": "red ball", "Ball": "ball", "roter Ball im Garten": "red ball in the garden"})
    assert _found(g, "Der rote  Ball.") == [("rote  Ball", "red ball")]
    assert _found(g, "Ein roter Ball im Garten, ein Ball.") == [
        ("roter Ball im Garten", "red ball in the garden"),
        ("Ball", "ball"),
    ]
    assert [(t.start, t.end) for t in g.find("rote Ball Ball")] == [(0, 9), (10, 14)]
    assert Glossary({}).find("anything") == []


def test_regex_characters_in_terms_are_plain_text():
    g = Glossary({"C++": "C++", "a.b": "x"})
    assert _found(g, "C++ und aXb, a.b") == [("C++", "C++"), ("a.b", "x")]


def test_the_file(tmp_path):
    f = tmp_path / "g.tsv"
    f.write_text("# a comment\nHund\thound\n\nroter  Ball\tred ball\nhund\thound\n", encoding="utf-8")
    g = read_glossary(f)
    assert g.entries == {"Hund": "hound", "roter Ball": "red ball"}  # the repeated term (any case) once


@pytest.mark.parametrize(
    "text, line, says",
    [
        ("Hund\thound\nKatze cat\n", 2, "expected 'source term<TAB>target term'"),
        ("Hund\thound\tdog\n", 1, "found 2 tabs"),
        ("\thound\n", 1, "empty source term"),
        ("Hund\t \n", 1, "empty target term"),
        ("Hund\thound\nhund\tdog\n", 2, "has another translation on line 1"),
    ],
)
def test_a_bad_line_is_named(tmp_path, text, line, says):
    f = tmp_path / "g.tsv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(MtxError, match=f"^{f}:{line}: .*") as e:
        read_glossary(f)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_invalid_utf8_and_a_missing_file_are_named(tmp_path):
    f = tmp_path / "g.tsv"
    f.write_bytes(b"Hund\thound\n\xff\tx\n")
    with pytest.raises(MtxError, match=f"{f}:2: invalid UTF-8"):
        read_glossary(f)
    with pytest.raises(MtxError, match="file not found"):
        read_glossary(tmp_path / "none.tsv")
