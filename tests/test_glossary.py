"""Glossaries (issue 34): the file's lines and its one-line errors; terms found at word boundaries, across case
as documented, multi-word across spaces, longest first, never overlapping."""

import pytest

from mtx.data.glossary import Glossary, read_glossary
from mtx.errors import MtxError, UsageError
from mtx.serve.service import Limits, Service


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


# --- the glossary in use: translate, evaluate and serve (a tiny model whose "hund" is "dog") ---

GLOSSARY = "hund\tcat\nmann\tbig woman\n"  # terms the model would never say for those words


def _glossary(tmp_path):
    path = tmp_path / "terms.tsv"
    path.write_text(GLOSSARY, encoding="utf-8")
    return path


def test_translate_and_evaluate_use_the_glossary(tiny_model, tmp_path):
    from test_cli import run

    lines = ["Ein hund rennt.", "Ein mann schläft hier.", "Ein HUND und ein mann."]
    plain = run("translate", "--model", tiny_model, *lines).output.splitlines()
    assert not any("cat" in x for x in plain)
    r = run("translate", "--model", tiny_model, "--glossary", _glossary(tmp_path), *lines)
    assert r.exit_code == 0, r.output
    out = r.output.splitlines()
    assert "cat" in out[0] and "big woman" in out[1] and "cat" in out[2] and "big woman" in out[2], out
    src, ref = tmp_path / "t.de", tmp_path / "t.en"
    src.write_text("\n".join(lines) + "\n")
    ref.write_text("A cat runs.\nA big woman sleeps here.\nA cat and a big woman.\n")
    r = run("evaluate", "--model", tiny_model, "--src-file", src, "--ref-file", ref, "--glossary", _glossary(tmp_path),
            "--output", tmp_path / "hyp")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "glossary: 4 terms found in the sources, 4 used (100.0%)" in r.output
    cons = tmp_path / "c.jsonl"
    cons.write_text('["small cat"]\n \n["there", "eats"]\n')  # a blank line: no constraints
    r = run("translate", "--model", tiny_model, "--constraints", cons, *lines)
    out = r.output.splitlines()
    assert "small cat" in out[0] and out[1] == plain[1] and "there" in out[2] and "eats" in out[2], out


def test_a_constraint_comes_out_as_whole_words(tiny_model, tmp_path):
    """A constraint that begins a word of the model's ("jump" of "jumps") is not continued into it: no piece that
    goes on with a word follows a constraint's last piece."""
    import re

    from test_cli import run

    lines = ["Ein kind springt.", "Ein mann isst.", "Eine frau schläft.", "Rot blau groß."]
    terms = ["jump", "ma", "wo", "blu"]
    cons = tmp_path / "c.jsonl"
    cons.write_text("".join(f'["{t}"]\n' for t in terms))
    r = run("translate", "--model", tiny_model, "--constraints", cons, *lines)
    for out, term in zip(r.output.splitlines(), terms, strict=True):
        assert re.search(rf"\b{term}\b", out), (term, out)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--engine", "ct2"], "the ct2 engine has no constrained search"),
        (["--constraints", "BAD"], "BAD:2: expected a list of target terms"),
        (["--constraints", "SHORT"], "SHORT: 1 lines for 2 input lines"),
        (["--constraints", "EMPTY"], "EMPTY:2: expected a list of target terms"),
        (["--constraints", "NOTJSON"], "NOTJSON:1: not JSON"),
    ],
)
def test_glossary_and_constraints_refused_in_one_line(tiny_model, tmp_path, args, says):
    from test_cli import run

    (tmp_path / "BAD").write_text('["a"]\n{"a": 1}\n')
    (tmp_path / "SHORT").write_text('["a"]\n')
    (tmp_path / "EMPTY").write_text('["a"]\n["b", " "]\n')
    (tmp_path / "NOTJSON").write_text('["a"\n[]\n')
    args = [str(tmp_path / a) if a in ("BAD", "SHORT", "EMPTY", "NOTJSON") else a for a in args]
    r = run("translate", "--model", tiny_model, "--glossary", _glossary(tmp_path), *args, "Ein hund.", "Ein mann.")
    assert r.exit_code != 0 and says in r.output and "Traceback" not in r.output, r.output


def test_serve_uses_its_glossary_and_each_requests(tiny_model, tmp_path):
    import json

    from test_serve import Running, _call, loaded

    translator = loaded.__wrapped__(tiny_model)
    service = Service(translator, [("de", "en")], Limits(wait_ms=1), glossary=read_glossary(_glossary(tmp_path)))

    def ask(**fields):
        return _call(r.port, "/translate", json.dumps({"source": "de", "target": "en", **fields}).encode())

    with Running(service) as r:
        status, out = ask(q=["Ein hund rennt.", "Ein kind isst."])
        assert status == 200 and "cat" in out["translatedText"][0], out
        status, out = ask(q=["Ein kind isst."], glossary={"kind": "red man"})
        assert status == 200 and "red man" in out["translatedText"][0], out
        status, out = ask(q=["Ein kind isst.", "Ein hund."], constraints=[["blue"], []])
        assert status == 200 and "blue" in out["translatedText"][0] and "cat" in out["translatedText"][1], out
        for fields, says in [
            ({"q": ["Ein kind."], "constraints": [["a"], ["b"]]}, "2 lists for 1 texts"),
            ({"q": ["Ein kind. Ein hund."], "constraints": [["blue"]]}, "has 2 sentences"),
            ({"q": ["Ein kind."], "constraints": [["blue " * 600]]}, "pieces of output"),
            ({"q": ["Ein kind."], "constraints": [[""]]}, "a target term is empty"),
            ({"q": ["Ein kind."], "glossary": {"kind": ""}}, "term is empty"),
            ({"q": ["Ein kind."], "glossary": ["kind"]}, "glossary must be an object"),
        ]:
            status, out = ask(**fields)
            assert status == 400 and says in out["error"], (fields, out)
        status, out = ask(q=["Ein hund rennt."])  # the server goes on
        assert status == 200 and "cat" in out["translatedText"][0]


def test_a_glossary_needs_the_mtx_engine_on_the_server(tiny_model):
    from fakes import FunctionTranslator

    with pytest.raises(UsageError, match="the ct2 engine has no constrained search"):
        Service(FunctionTranslator(str.upper), [("de", "en")], Limits(), "ct2", Glossary({"a": "b"}))


def test_mtx_serve_reads_its_glossary_before_it_listens(tiny_model, tmp_path):
    """`mtx serve --glossary` reaches the server: a bad file is named in one line (an address no one can listen
    on stops a server that ignored the file)."""
    from typer.testing import CliRunner

    from mtx.cli.main import app

    bad = tmp_path / "g.tsv"
    bad.write_text("Hund\thound\nKatze cat\n", encoding="utf-8")
    args = ["serve", "--model", str(tiny_model), "--host", "256.0.0.1", "--port", "0", "--glossary", str(bad)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code != 0 and f"{bad}:2:" in r.output and "Traceback" not in r.output, r.output
    r = CliRunner().invoke(app, [*args[:-1], str(_glossary(tmp_path)), "--engine", "ct2"])
    assert r.exit_code != 0 and "the ct2 engine has no constrained search" in r.output, r.output


def test_a_requests_terms_win_where_they_overlap_the_servers():
    from mtx.data.glossary import find_all

    server, request = Glossary({"hund": "cat", "mann": "big woman"}), Glossary({"ein hund": "a small cat"})
    got = [(t.source, t.target) for t in find_all([request, server], "Ein hund und ein mann.")]
    assert got == [("ein hund", "a small cat"), ("mann", "big woman")]
    assert [t.target for t in find_all([server], "Ein hund.")] == ["cat"]
    got = [t.target for t in find_all([request, server], "Ein mann und ein hund.")]  # left to right
    assert got == ["big woman", "a small cat"]
    got = [t.target for t in find_all([Glossary({"C++": "C++"}), Glossary({"-Code": "-code"})], "C++-Code")]
    assert got == ["C++", "-code"]  # terms that touch do not overlap


def test_serve_refuses_what_would_fail_a_shared_batch():
    """Constraints on the ct2 engine, and more pieces of terms than --max-term-pieces, are the request's own 400
    and 413: they never reach the batch that other requests share."""
    import json

    from fakes import FunctionTranslator
    from test_serve import Running, _call

    def ask(r, **fields):
        return _call(r.port, "/translate", json.dumps({"source": "de", "target": "en", **fields}).encode())

    with Running(Service(FunctionTranslator(str.upper), [("de", "en")], Limits(wait_ms=1), "ct2")) as r:
        status, out = ask(r, q=["ein hund"], constraints=[["dog"]])
        assert status == 400 and "constraints: the ct2 engine has no constrained search" in out["error"], out
        status, out = ask(r, q=["ein hund"], glossary={"hund": "dog"})
        assert status == 400 and "glossary: the ct2 engine" in out["error"], out
    with Running(Service(FunctionTranslator(str.upper), [("de", "en")], Limits(wait_ms=1, max_term_pieces=3))) as r:
        status, out = ask(r, q=["ein hund", "ein mann"], constraints=[["a b c"], ["a b c d"]])
        assert status == 413 and "sentence 2 has 4 pieces of terms: over the limit of 3" in out["error"], out
        status, out = ask(r, q=["hund hund"], glossary={"hund": "a b"})
        assert status == 413 and "sentence 1 has 4 pieces" in out["error"], out
        status, out = ask(r, q=["ein hund"], constraints=[["a b c"]])
        assert status == 200 and out["translatedText"] == ["EIN HUND [a b c]"], out
    limits = Limits(wait_ms=1, max_term_pieces=1000, max_chars=700)
    with Running(Service(FunctionTranslator(str.upper), [("de", "en")], limits)) as r:
        # the model's output holds the prefix and the constraints: 200 + 100 pieces, over its 255
        status, out = ask(r, q=["ein hund"], prefix="x " * 200, constraints=[["y " * 100]])
        assert status == 400 and "sentence 1 needs 300 pieces of output" in out["error"], out
        status, out = ask(r, q=["ein hund"], glossary={"hund": "x" * 700})  # terms count in the request's size
        assert status == 413 and "characters: over the limit of 700" in out["error"], out
        status, out = ask(r, q=["ein hund"], constraints=[["x" * 700]])
        assert status == 413 and "characters: over the limit of 700" in out["error"], out


def test_requests_with_and_without_terms_share_a_batch():
    """Sentences of requests with terms and without, batched together, each get their own terms; a request's
    glossary wins over the server's where they overlap."""
    from concurrent.futures import ThreadPoolExecutor

    from fakes import FunctionTranslator
    from test_serve import Running, _post

    fake = FunctionTranslator(str.upper)
    calls = []
    decode_ids = fake.decode_ids
    fake.decode_ids = lambda ids, **kw: calls.append(len(ids)) or decode_ids(ids, **kw)
    service = Service(fake, [("de", "en")], Limits(wait_ms=300), glossary=Glossary({"hund": "cat"}))
    asks = [
        {"q": ["ein mann", "eine frau"]},
        {"q": ["ein kind", "ein hund"], "constraints": [["blue"], []]},
        {"q": ["ein hund rennt"], "glossary": {"ein hund": "red woman"}},
    ]
    with Running(service) as r, ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda a: _post(r.port, {"source": "de", "target": "en", **a}), asks))
    assert [s for s, _ in got] == [200, 200, 200], got
    assert [o["translatedText"] for _, o in got] == [
        ["EIN MANN", "EINE FRAU"], ["EIN KIND [blue]", "EIN HUND [cat]"], ["EIN HUND RENNT [red woman]"]
    ]  # fmt: skip
    assert len(calls) < 3, calls  # some were batched together
