"""The server's translation memory (mtx/serve/translation_memory.py): exact repeats of a sentence answered without
decoding, and as they were the first time; anything a translation depends on changes the key; approved
translations from a TMX or TSV always win for their exact source; hits and misses in /metrics."""

from __future__ import annotations

import json
import urllib.request

import pytest
from fakes import FunctionTranslator
from test_cli import _one_line_error, run
from test_serve import Running, _post, loaded  # noqa: F401  (the tiny model's translator, a fixture)

from mtx.errors import MtxError, UsageError
from mtx.serve.loadtest import Workload
from mtx.serve.service import Limits, Service
from mtx.serve.translation_memory import read_memory_file

ASK = {"source": "de", "target": "en"}


def _metric(port: int, result: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        page = r.read().decode()
    line = next(x for x in page.splitlines() if x.startswith(f'mtx_memory_sentences_total{{result="{result}"}}'))
    return float(line.split()[-1])


def test_repeats_are_answered_from_memory_as_they_were_decoded():
    tr = FunctionTranslator(str.upper)
    with Running(Service(tr, [("de", "en")], Limits(wait_ms=1, memory=100))) as r:
        first = _post(r.port, {"q": "Ein Hund. Eine Katze.", **ASK})
        second = _post(r.port, {"q": ["Eine Katze. Ein Vogel.", "Ein Hund."], **ASK})
        assert tr.seen == ["Ein Hund.", "Eine Katze.", "Ein Vogel."]  # each sentence decoded once
        assert first == (200, {"translatedText": "EIN HUND. EINE KATZE.", "confidence": 0.5})
        assert second == (200, {"translatedText": ["EINE KATZE. EIN VOGEL.", "EIN HUND."], "confidence": [0.5, 0.5]})
        assert (_metric(r.port, "hit"), _metric(r.port, "miss"), _metric(r.port, "approved")) == (2, 3, 0)
        # what the translation depends on is in the key: the options, the target prefix, the terms
        _post(r.port, {"q": "Ein Hund.", "no_repeat_ngram": 2, **ASK})
        _post(r.port, {"q": "Ein Hund.", "prefix": "A", **ASK})
        _post(r.port, {"q": "Ein Hund.", "constraints": [["hound"]], **ASK})
        assert tr.seen[3:] == ["Ein Hund."] * 3


def test_without_memory_every_sentence_is_decoded_and_a_full_memory_forgets_the_oldest():
    tr = FunctionTranslator(str.upper)
    with Running(Service(tr, [("de", "en")], Limits(wait_ms=1))) as r:
        for _ in range(2):
            _post(r.port, {"q": "Ein Hund.", **ASK})
        assert tr.seen == ["Ein Hund."] * 2
    tr = FunctionTranslator(str.upper)
    with Running(Service(tr, [("de", "en")], Limits(wait_ms=1, memory=2))) as r:
        for q in ("A.", "B.", "A.", "C.", "A.", "B."):  # B, the least recently used, goes when C comes in
            _post(r.port, {"q": q, **ASK})
        assert tr.seen == ["A.", "B.", "C.", "B."]


def test_the_models_repeats_equal_its_translations(loaded):  # noqa: F811
    src = "Ein Hund rennt. Zwei Katzen."
    with Running(Service(loaded, [("de", "en")], Limits(wait_ms=1, memory=10))) as r:
        first = _post(r.port, {"q": src, **ASK})
        again = _post(r.port, {"q": src, **ASK})
        assert _metric(r.port, "hit") == 2
    want = loaded.translate(["Ein Hund rennt.", "Zwei Katzen."])
    assert first == again and first[1]["translatedText"] == " ".join(t.text for t in want)


def test_approved_translations_win_for_their_exact_source(tmp_path):
    tsv = tmp_path / "approved.tsv"
    tsv.write_text("Ein Hund.\tA hound.\n\nEine Katze. \tA cat, approved.\n", encoding="utf-8")
    approved = read_memory_file(tsv, [("de", "en")])
    assert approved == {("de", "en"): {"Ein Hund.": "A hound.", "Eine Katze.": "A cat, approved."}}
    tr = FunctionTranslator(str.upper)
    with Running(Service(tr, [("de", "en")], Limits(wait_ms=1), approved=approved)) as r:  # no cache: memory 0
        status, out = _post(r.port, {"q": ["Ein Hund. Ein Vogel.", "Ein Hund!"], **ASK})
        assert out == {"translatedText": ["A hound. EIN VOGEL.", "EIN HUND!"], "confidence": [0.5, 0.5]}
        _, out = _post(r.port, {"q": "Eine Katze.", "sentences": True, **ASK})
        assert out["sentences"] == [{"text": "A cat, approved.", "confidence": 1.0}]
        assert tr.seen == ["Ein Vogel.", "Ein Hund!"] and _metric(r.port, "approved") == 2


def test_a_tmx_gives_each_direction_of_the_model_its_units(tmp_path):
    tmx = tmp_path / "m.tmx"
    tmx.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4"><header srclang="de"/><body>\n'
        '<tu><tuv xml:lang="de-DE"><seg>Ein <bpt i="1">&lt;b&gt;</bpt>Hund<ept i="1">&lt;/b&gt;</ept>.</seg></tuv>'
        '<tuv xml:lang="en-GB"><seg>A  hound.</seg></tuv><tuv lang="FR"><seg>Un chien.</seg></tuv></tu>\n'
        '<tu><tuv xml:lang="de"><seg>Nur Deutsch.</seg></tuv></tu>\n</body></tmx>\n',
        encoding="utf-8",
    )
    got = read_memory_file(tmx, [("de", "en"), ("en", "fr"), ("fr", "de")])
    assert got == {
        ("de", "en"): {"Ein <b>Hund</b>.": "A hound."},
        ("en", "fr"): {"A hound.": "Un chien."},
        ("fr", "de"): {"Un chien.": "Ein <b>Hund</b>."},
    }


@pytest.mark.parametrize(
    "name, content, pairs, error",
    [
        ("a.tsv", "Ein Hund.\tA dog.\nnur eine Spalte\n", [("de", "en")], "a.tsv:2: expected source<TAB>translation"),
        ("a.tsv", "Ein Hund.\t \n", [("de", "en")], "a.tsv:1: expected source<TAB>translation"),
        ("a.tsv", "Ein Hund.\tA dog.\n", [("de", "en"), ("de", "fr")], "a TSV holds one direction"),
        ("a.tmx", "<tmx><body><tu></body></tmx>", [("de", "en")], "a.tmx:1: not TMX"),
        ("a.tmx", "<xliff/>", [("de", "en")], "not TMX (no <tmx><body>)"),
    ],
)
def test_a_bad_memory_file_is_one_line_naming_it(tmp_path, name, content, pairs, error):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises((MtxError, UsageError), match=error.replace("(", r"\(").replace(")", r"\)")):
        read_memory_file(path, pairs)
    with pytest.raises(UsageError, match="file not found"):
        read_memory_file(tmp_path / "none.tmx", pairs)


def test_a_negative_memory_is_refused():
    with pytest.raises(UsageError, match="memory"):
        Limits(memory=-1)


def test_the_workload_repeats_the_share_it_is_asked():
    w = Workload([f"s{i}" for i in range(100_000)], repeats=0.3, seed=1)
    sent = [w.next() for _ in range(10_000)]
    assert w.counts["repeated"] / 10_000 == pytest.approx(0.3, abs=0.015)
    assert len(set(sent)) == w.counts["new"]  # a new sentence is one never sent before
    assert Workload(["a", "b"]).next() == "a"


def test_bench_serve_measures_a_repeated_workload(tiny_model, tiny_corpus):
    args = ["bench", "serve", "--model", tiny_model, "--data", tiny_corpus, "--clients", 2, "--seconds", 2]
    r = run(*args, "--beam", 1, "--memory", 1000, "--repeats", 0.5)
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    assert rec["errors"] == 0 and rec["memory"] == 1000 and rec["repeats"] == 0.5
    assert rec["requests_repeated"] > 0 and rec["memory_hit"] >= rec["requests_repeated"] > 0
    _one_line_error(run(*args, "--repeats", 1.5), 2, "--repeats 1.5")


def test_mtx_serve_passes_its_memory_options_on(tiny_model, tmp_path):
    """`mtx serve --memory-file` is read before the server listens (a bad line named in one line; an address no
    one can listen on stops a server that ignored it), and `--memory` reaches the server's limits."""
    bad = tmp_path / "tm.tsv"
    bad.write_text("Ein Hund.\tA dog.\nnur eine Spalte\n", encoding="utf-8")
    args = ["serve", "--model", tiny_model, "--host", "256.0.0.1", "--port", 0]
    _one_line_error(run(*args, "--memory-file", bad), 1, f"{bad}:2:")
    _one_line_error(run(*args, "--memory", -1), 2, "memory")
