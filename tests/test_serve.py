"""`mtx serve`: LibreTranslate's API on an ephemeral loopback port, dynamic batching, errors, SIGTERM."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from mtx import checkpoint
from mtx.decode.translator import Translator
from mtx.documents.segment import split_sentences
from mtx.serve.app import listen, make_app, server
from mtx.serve.service import Limits, Service


def _call(port: int, path: str, body: bytes | None = None, ctype: str = "application/json") -> tuple[int, object]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST" if body else "GET")
    if body is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _post(port: int, payload: dict) -> tuple[int, object]:
    return _call(port, "/translate", json.dumps(payload).encode())


def _text(out: dict) -> dict:
    """An answer without its confidences (for the tests of what else it holds)."""
    return {k: v for k, v in out.items() if k != "confidence"}


class Running:
    """A server for `service` in a thread of this process, on a port the system picks."""

    def __init__(self, service: Service):
        self.sock = listen("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.server = server(make_app(service, "test"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def loaded(tiny_model):
    model, tokenizer, cfg, _ = checkpoint.load(tiny_model, torch.device("cpu"))
    return Translator(model, tokenizer, dataclasses.replace(cfg.decode, beam=2), torch.device("cpu"))


@pytest.fixture(scope="module")
def running(loaded):
    service = Service(loaded, [("de", "en")], Limits(max_chars=200, max_sentences=4, wait_ms=20))
    with Running(service) as r:
        r.service = service
        yield r


def test_split_sentences():
    assert split_sentences("Ein Hund rennt. Eine Katze schläft! Drei Kinder?", "de") == [
        "Ein Hund rennt.",
        "Eine Katze schläft!",
        "Drei Kinder?",
    ]
    # abbreviations and ordinals stay whole (the former splitter cut each of these; issue 31, item 8)
    for lang, whole in (("de", "Ich habe z. B. Hunde gern."), ("de", "Er kommt am 3. Oktober."),
                        ("de", "Es kostet ca. 5 Euro."), ("de", "Dr. Müller ist da."), ("fr", "M. Dupont est là."),
                        ("cs", "Přišel např. Petr."), ("en", "Mr. Smith met Dr. Jones.")):  # fmt: skip
        assert split_sentences(f"{whole} Dann gehen wir.", lang) == [whole, "Dann gehen wir."]
    assert split_sentences('Er rief. "Hallo!"', "de") == ["Er rief.", '"Hallo!"']
    assert split_sentences("   ", "de") == []


def test_translate_as_librettranslate_clients_do(running, loaded, tiny_corpus):
    src = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:3]
    trs = loaded.translate(src)
    want, conf = [t.text for t in trs], [round(t.confidence, 4) for t in trs]
    status, out = _post(running.port, {"q": src[0], "source": "de", "target": "en", "format": "text"})
    assert (status, out) == (200, {"translatedText": want[0], "confidence": conf[0]})
    status, out = _post(running.port, {"q": src, "source": "auto", "target": "en"})  # a list; auto: the one source
    detected = [{"language": "de", "confidence": 100.0}] * 3
    assert (status, out) == (200, {"translatedText": want, "confidence": conf, "detectedLanguage": detected})
    # lines and sentences are translated one by one and put back in place; a text's confidence is its least
    status, out = _post(running.port, {"q": f"{src[0]} {src[1]}\n\n{src[2]}", "source": "de", "target": "en"})
    assert (status, out) == (200, {"translatedText": f"{want[0]} {want[1]}\n\n{want[2]}", "confidence": min(conf)})
    empty = {"translatedText": "", "confidence": 1.0}
    assert _post(running.port, {"q": "", "source": "de", "target": "en"}) == (200, empty)
    assert _call(running.port, "/languages") == (200, [{"code": "de", "name": "German", "targets": ["en"]}])
    status, health = _call(running.port, "/health")
    assert status == 200 and health["status"] == "ok" and health["pairs"] == ["de-en"] and health["requests"] >= 3


def test_concurrent_requests_are_batched_and_answered_each(loaded, tiny_corpus):
    """16 clients at once, with a batch budget of exactly their 16 sentences and a wait longer than the test:
    one batch decodes them all, and each client gets its own sentence's translation."""
    src = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:16]
    want = [t.text for t in loaded.translate(src)]
    budget = sum(len(x) + 1 for x in loaded.tokenizer.encode(src))
    with Running(Service(loaded, [("de", "en")], Limits(wait_ms=120_000, batch_tokens=budget))) as r:
        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda s: _post(r.port, {"q": s, "source": "de", "target": "en"}), src))
        health = _call(r.port, "/health")[1]
    assert [(code, _text(out)) for code, out in got] == [(200, {"translatedText": w}) for w in want]
    assert (health["sentences"], health["batches"]) == (16, 1)


@pytest.mark.parametrize(
    "body, ctype, status, words",
    [
        (b'{"q": "Ein Hund.", "source": "de",', "application/json", 400, "malformed JSON"),
        (b'{"source": "de", "target": "en"}', "application/json", 400, "missing q"),
        (b'{"q": 3, "source": "de", "target": "en"}', "application/json", 400, "string or a list"),
        (b'["Ein Hund."]', "application/json", 400, "JSON object"),
        (b'{"q": "Ein Hund.", "source": "de", "target": "xx"}', "application/json", 400, "de-en"),
        (b'{"q": "Ein Hund.", "source": "fr", "target": "en"}', "application/json", 400, "de-en"),
        (b'{"q": "Ein Hund.", "source": "de", "target": "en", "format": "pdf"}', "application/json", 400, "text"),
        (json.dumps({"q": "Hund " * 50, "source": "de", "target": "en"}).encode(), "application/json", 413, "200"),
        (b'{"q": "Ein. Zwei. Drei. Vier. Fuenf.", "source": "de", "target": "en"}', "application/json", 413, "5 sen"),
        (b"q=Ein+Hund.&source=de&target=en&alternatives=x", "application/x-www-form-urlencoded", 400, "number"),
        (b'{"q": "Ein Hund.", "source": "de", "target": "en"}', "text/plain", 415, "multipart/form-data"),
        (
            b'{"q": "Ein Hund.", "source": "de", "target": "en", "no_repeat_ngram": -1}',
            "application/json",
            400,
            "no_repeat_ngram must be a whole number",
        ),
        (
            b"q=Ein+Hund.&source=de&target=en&repetition_penalty=0",
            "application/x-www-form-urlencoded",
            400,
            "repetition_penalty must be a number above 0",
        ),
    ],
    ids=[
        "malformed",
        "no-q",
        "q-number",
        "not-object",
        "unknown-target",
        "unknown-source",
        "format",
        "too-long",
        "too-many-sentences",
        "form",
        "text-plain",
        "no-repeat-ngram",
        "repetition-penalty",
    ],  # fmt: skip
)
def test_bad_requests_get_a_4xx_json_error_and_the_server_goes_on(running, body, ctype, status, words):
    code, out = _call(running.port, "/translate", body, ctype)
    assert code == status and words in out["error"]
    assert _post(running.port, {"q": "Ein Hund.", "source": "de", "target": "en"})[0] == 200


def test_unknown_routes_and_methods_are_json_errors(running):
    assert _call(running.port, "/nowhere")[0] == 404
    code, out = _call(running.port, "/translate")  # GET
    assert code == 405 and "error" in out


def test_multi_target_model_serves_each_target_with_its_tag():
    """Requests for two targets collected in one batch are decoded each with its own tag (as `--to` does)."""
    from fakes import WordTokenizer

    from mtx.config import DecodeConfig
    from mtx.decode.translator import BatchTranslator, Translation

    class Tok(WordTokenizer):  # one piece per word, the tags as pieces
        def piece_id(self, piece):
            return {"<2de>": 4, "<2en>": 5}[piece]

    class Echo(BatchTranslator):  # "translates" into the prefix it was given and the line
        def __init__(self):
            self.tokenizer, self.cfg, self.batch_tokens = Tok(), DecodeConfig(beam=1), 1000

        def decode_ids(self, ids, prefix=None, **options):
            return [Translation(f"{prefix} {x}", [(f"{prefix} {x}", 0.0)]) for x in self.tokenizer.decode(ids)]

    # the batch closes when both requests are in (3 pieces each, the budget 6), however long the second takes
    service = Service(Echo(), [("de", "en"), ("en", "de")], Limits(wait_ms=60_000, batch_tokens=6))
    with Running(service) as r, ThreadPoolExecutor(2) as pool:
        en, de = pool.map(lambda t: _post(r.port, {"q": "a b", "source": "auto", "target": t}), ["en", "de"])
        health = _call(r.port, "/health")[1]
    auto = {"language": "de", "confidence": 100.0}, {"language": "en", "confidence": 100.0}  # the one source each
    assert (en[0], _text(en[1])) == (200, {"translatedText": "[5] a b", "detectedLanguage": auto[0]})
    assert (de[0], _text(de[1])) == (200, {"translatedText": "[4] a b", "detectedLanguage": auto[1]})
    assert health["batches"] == 1 and health["sentences"] == 2
    assert service.languages() == [
        {"code": "de", "name": "German", "targets": ["en"]},
        {"code": "en", "name": "English", "targets": ["de"]},
    ]


def test_serve_cli_answers_in_flight_requests_on_sigterm(tiny_model, loaded, tmp_path):
    """`mtx serve --port 0` names its port; SIGTERM while a request waits in the batcher: it is answered, exit 0.
    The server's --glossary is used."""
    from mtx.data.glossary import read_glossary

    glossary = tmp_path / "terms.tsv"
    glossary.write_text("hund\tcat\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "mtx", "serve", "--model", str(tiny_model), "--port", "0", "--device", "cpu"]
    cmd += ["--beam", "2", "--precision", "fp32", "--no-shortlist"]  # as `loaded` decodes (serve: int8 on a CPU)
    proc = subprocess.Popen([*cmd, "--batch-wait-ms", "1500", "--glossary", str(glossary)], stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        for _ in range(200):
            try:
                if _call(port, "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_post, port, {"q": "Ein Hund.", "source": "de", "target": "en"})
            while _call(port, "/health")[1]["requests"] == 0:  # until it waits in the batcher (for 1.5 s)
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            status, out = pending.result(timeout=60)
        want = loaded.translate(["Ein Hund."], glossary=read_glossary(glossary))[0].text
        assert "cat" in want and (status, _text(out)) == (200, {"translatedText": want})
        assert proc.wait(60) == 0
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bench_serve_reports_latency_and_no_errors(tiny_model, tiny_corpus):
    from typer.testing import CliRunner

    from mtx.cli.main import app

    args = ["bench", "serve", "--model", str(tiny_model), "--data", str(tiny_corpus), "--clients", "4"]
    result = CliRunner().invoke(app, [*args, "--seconds", "2", "--beam", "2"])
    assert result.exit_code == 0, result.output
    rec = json.loads(result.output.strip().splitlines()[-1])
    assert rec["errors"] == 0 and rec["requests"] > 0 and rec["server_exit"] == 0
    assert (rec["clients"], rec["beam"], rec["pair"]) == (4, 2, "de-en")
    # both figures are rounded (seconds to 0.01): at ~100 requests/s that alone moves the quotient by ~0.3%
    assert rec["requests_per_s"] == pytest.approx(rec["requests"] / rec["seconds"], rel=0.01, abs=0.2)
    assert 1 <= rec["mean_batch_sentences"] <= 4  # at most one request a client in flight
    assert 0 < rec["latency_ms_p50"] <= rec["seconds"] * 1000


def test_percentiles_are_the_values_at_their_ranks():
    from mtx.measure import percentile_ms

    seconds = [0.010 * k for k in range(100, 0, -1)]  # 1.00 s down to 0.01 s, unsorted
    assert [percentile_ms(seconds, q) for q in (0.5, 0.9, 0.99, 1.0)] == [510.0, 910.0, 1000.0, 1000.0]
    assert percentile_ms([0.25], 0.5) == 250.0 and percentile_ms([], 0.5) is None


def test_two_workers_answer_every_request_with_its_own_translation(loaded, tiny_corpus):
    """With two batches decoding at once (two threads over one model), each request still gets its own
    sentence's translation, and requests are answered as their sentences finish."""
    src = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:20]
    want = [t.text for t in loaded.translate(src)]
    service = Service(loaded, [("de", "en")], Limits(wait_ms=5, workers=2))
    with Running(service) as r, ThreadPoolExecutor(20) as pool:
        got = list(pool.map(lambda s: _post(r.port, {"q": s, "source": "de", "target": "en"}), src))
        health = _call(r.port, "/health")[1]
    assert [(code, _text(out)) for code, out in got] == [(200, {"translatedText": w}) for w in want]
    assert health["workers"] == 2 and health["sentences"] == 20


def test_the_ctranslate2_engine_with_two_workers(tiny_model, tiny_corpus):
    """`serve --engine ct2 --workers 2`: CTranslate2 decodes two batches at once (inter_threads) and reports each
    batch's sentences when it ends; every request gets its own sentence's translation."""
    from mtx.decode.load import load

    translator, _ = load(tiny_model, "ct2", "cpu", beam=2, workers=2)
    src = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:20]
    want = [t.text for t in translator.translate(src)]
    service = Service(translator, [("de", "en")], Limits(wait_ms=5, workers=2), engine="ct2")
    with Running(service) as r, ThreadPoolExecutor(20) as pool:
        got = list(pool.map(lambda s: _post(r.port, {"q": s, "source": "de", "target": "en"}), src))
        health = _call(r.port, "/health")[1]
    assert [(code, _text(out)) for code, out in got] == [(200, {"translatedText": w}) for w in want]
    assert health["engine"] == "ct2" and health["workers"] == 2 and health["sentences"] == 20


def test_mtx_fields_prefix_sampling_and_score(running, loaded, tiny_corpus):
    src = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:2]
    base = {"source": "de", "target": "en"}
    status, out = _post(running.port, {"q": src, "prefix": ["Small", ""], **base})
    assert status == 200 and out["translatedText"][0].startswith("Small")
    assert out["translatedText"][1] == loaded.translate(src[1:])[0].text
    sampled = {"q": src, "sample": "topk=0", "temperature": 3.0, "seed": 4, **base}
    first, again = _post(running.port, sampled), _post(running.port, sampled)
    assert first[0] == 200 and first == again  # decoded alone, a seed gives the same samples
    hyps = [t.text for t in loaded.translate(src)]
    status, out = _call(running.port, "/score", json.dumps({"q": src, "translation": hyps, **base}).encode())
    want = [t.nbest[0][1] for t in loaded.translate(src)]
    assert status == 200 and [s["score"] for s in out["scores"]] == pytest.approx(want, abs=1e-4)
    for bad, words in (({"sample": "top5"}, "topk=K"), ({"temperature": 0}, "temperature"), ({"seed": -1}, "seed"),
                       ({"prefix": ["a"]}, "one for each text")):  # fmt: skip
        status, out = _post(running.port, {"q": src, **base, **bad})
        assert status == 400 and words in out["error"], out
    status, out = _call(running.port, "/score", json.dumps({"q": src, "translation": hyps[:1], **base}).encode())
    assert status == 400 and "one for each" in out["error"]


def _multipart(fields: dict) -> tuple[bytes, str]:
    cut = "mtx-test-boundary"
    parts = [f'--{cut}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    return ("".join(parts) + f"--{cut}--\r\n").encode(), f"multipart/form-data; boundary={cut}"


def test_every_body_librettranslate_accepts_gives_the_same_answer(running, loaded, tiny_corpus):
    src = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[0]
    fields = {"q": src, "source": "de", "target": "en", "format": "text", "alternatives": 2, "api_key": ""}
    as_json = _call(running.port, "/translate", json.dumps(fields).encode())
    form = _call(
        running.port, "/translate", urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded"
    )
    multi = _call(running.port, "/translate", *_multipart(fields))
    assert as_json == form == multi and as_json[0] == 200
    best = loaded.translate([src], decode=dataclasses.replace(loaded.cfg, beam=3, nbest=3))[0]
    assert _text(as_json[1]) == {"translatedText": best.text, "alternatives": [t for t, _ in best.nbest[1:]]}


def test_detect_and_source_auto(running, loaded, tiny_corpus):
    src = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:2]
    status, out = _call(running.port, "/detect", json.dumps({"q": src[0]}).encode())
    assert status == 200 and out == [{"language": "de", "confidence": 100.0}]  # the model's one source
    status, out = _post(running.port, {"q": src, "source": "auto", "target": "en"})
    assert status == 200 and out["detectedLanguage"] == [{"language": "de", "confidence": 100.0}] * 2
    assert out["translatedText"] == [t.text for t in loaded.translate(src)]
    status, out = _call(running.port, "/frontend/settings")
    assert status == 200 and out["charLimit"] == 200 and out["keyRequired"] is False


def test_detection_among_several_sources():
    from mtx.serve.detect import Detector

    d = Detector(["de", "en", "fr", "cs", "xx"])
    assert d.languages == ["de", "en", "fr", "cs"]
    texts = {
        "de": "Zwei junge Männer spielen im Park Fußball.",
        "en": "Two young men are playing soccer in a park.",
        "fr": "Deux jeunes hommes jouent au football dans un parc.",
        "cs": "Dva mladí muži hrají v parku fotbal.",
    }
    for lang, text in texts.items():
        ranked = d.detect(text)
        assert ranked[0]["language"] == lang and sum(r["confidence"] for r in ranked) == pytest.approx(100, abs=0.5)


def test_api_keys_and_rate_limits(loaded, tmp_path):
    from mtx.errors import MtxError
    from mtx.serve.access import read_keys

    k1, k2 = "key-one-1234", "key-two-5678"
    (tmp_path / "keys").write_text(f"\ufeff# the keys\n{k1}  # Ann\n\n{k2}\n", encoding="utf-8")  # BOM, comments
    keys = read_keys(tmp_path / "keys")
    assert keys == {k1, k2}
    (tmp_path / "short").write_text("k1\n", encoding="utf-8")
    with pytest.raises(MtxError, match="short:1"):
        read_keys(tmp_path / "short")
    limits = Limits(max_chars=200, max_sentences=4, wait_ms=5, req_limit=2, keys=frozenset(keys))
    with Running(Service(loaded, [("de", "en")], limits)) as r:
        ask = {"q": "Ein Hund.", "source": "de", "target": "en"}
        status, out = _post(r.port, ask)
        assert status == 403 and "API key" in out["error"]
        assert _post(r.port, {**ask, "api_key": "nope"}) == (403, {"error": "Invalid API key"})
        assert _post(r.port, {**ask, "api_key": k1})[0] == 200
        assert _post(r.port, {**ask, "api_key": k1})[0] == 200
        status, out = _post(r.port, {**ask, "api_key": k1})
        assert status == 429 and "2 a minute" in out["error"]  # counted per key:
        assert _post(r.port, {**ask, "api_key": k2})[0] == 200  # another key has its own count
        assert _call(r.port, "/frontend/settings")[1]["keyRequired"] is True
        form = urllib.parse.urlencode({**ask, "api_key": k2}).encode()
        assert _call(r.port, "/translate", form, "application/x-www-form-urlencoded")[0] == 200
        assert _post(r.port, {**ask, "api_key": "guess-0001"})[0] == 429  # wrong keys count against the address


def test_metrics_in_prometheus_text_format(running, loaded):
    assert _post(running.port, {"q": "Ein Hund.", "source": "de", "target": "en"})[0] == 200
    _call(running.port, "/nowhere")
    req = urllib.request.Request(f"http://127.0.0.1:{running.port}/metrics")
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    for line in ('mtx_requests_total{code="200",route="/translate"}', 'mtx_requests_total{code="404",route="other"}',
                 "mtx_request_seconds_bucket", "mtx_batch_sentences_count", "mtx_queue_sentences 0.0",
                 "mtx_sentences_decoded_total"):  # fmt: skip
        assert line in text, line
    with Running(Service(loaded, [("de", "en")], Limits(metrics=False))) as r:  # mtx serve --no-metrics
        assert _call(r.port, "/metrics")[0] == 404 and _call(r.port, "/health")[0] == 200


def test_html_of_the_real_model_is_its_runs_translations(running, loaded):
    """On the tiny model: the page's runs are translated as `mtx translate` translates their sentences."""
    src = '<p>Ein <b>Hund</b> rennt.</p><p title="x">Zwei Katzen.</p>'
    status, out = _post(running.port, {"q": src, "source": "de", "target": "en", "format": "html"})
    first, second = (t.text for t in loaded.translate(["Ein Hund rennt.", "Zwei Katzen."]))
    html = out["translatedText"]
    assert status == 200 and html.startswith("<p>") and html.endswith("</p>")
    assert html.count("<b>") == html.count("</b>") == 1 and html.count('<p title="x">') == 1
    strip = re.compile(r"<[^>]+>")
    assert [strip.sub("", p) for p in html.split('</p><p title="x">')] == [first, second]  # tags by alignment


def test_both_engines_align_a_translation_to_its_source(tiny_model, loaded, tiny_corpus):
    """The alignments that place HTML tags: one row a target piece, one column a source piece, rows summing to at
    most 1; CTranslate2's return_attention is the last layer's heads averaged, mtx's the mean of every layer."""
    from mtx.data.batching import collate
    from mtx.decode.load import load

    ct2, _ = load(tiny_model, "ct2", "cpu", beam=2)
    src = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:4]
    ids = loaded.tokenizer.encode(src)
    outs = loaded.translate(src)
    mine = loaded.align(ids, [t.tokens for t in outs])
    theirs = ct2.align(ids, [t.tokens for t in outs])
    model = loaded.model
    for w, v, x, t in zip(mine, theirs, ids, outs, strict=True):
        assert w.shape == v.shape == (len(t.tokens), len(x))
        assert torch.all(w.sum(1) <= 1.0 + 1e-4) and torch.all(w.sum(1) > 0.2)  # the EOS column is left out
        batch = collate([x], [t.tokens])
        every = model.cross_attention(batch.src, batch.src_mask, batch.tgt_in)[:, 0]  # (L, H, T, S + EOS)
        assert torch.allclose(w, every.mean(dim=(0, 1))[: len(t.tokens), : len(x)], atol=1e-5)
        assert torch.allclose(v, every[-1].mean(dim=0)[: len(t.tokens), : len(x)], atol=1e-3)


def test_html_through_ct2_keeps_the_text_of_the_mtx_engine(tiny_model, loaded):
    from mtx.decode.load import load

    ct2, _ = load(tiny_model, "ct2", "cpu", beam=2)
    page = "<p>Ein <b>Hund</b> rennt über die <i>Wiese</i>.</p>"
    strip = re.compile(r"<[^>]+>")
    answers = []
    for translator, engine in ((loaded, "mtx"), (ct2, "ct2")):
        with Running(Service(translator, [("de", "en")], Limits(wait_ms=1), engine=engine)) as r:
            status, out = _post(r.port, {"q": page, "source": "de", "target": "en", "format": "html"})
        assert status == 200 and out["translatedText"].count("<b>") == 1 and out["translatedText"].count("<i>") == 1
        answers.append(strip.sub("", out["translatedText"]))
    assert answers[0] == answers[1]


def test_bench_serve_hostile_answers_every_normal_request(tiny_model, tiny_corpus):
    """`bench serve --hostile` for a few seconds: every hostile kind is refused as it should be, every normal
    request is answered."""
    from typer.testing import CliRunner

    from mtx.cli.main import app

    args = ["bench", "serve", "--model", str(tiny_model), "--data", str(tiny_corpus), "--clients", "2", "--hostile"]
    result = CliRunner().invoke(app, [*args, "--seconds", "4", "--beam", "2"])
    assert result.exit_code == 0, result.output
    rec = json.loads(result.output.strip().splitlines()[-1])
    assert rec["normal_success"] == 1.0 and rec["server_exit"] == 0
    got = rec["hostile"]
    for kind, code in (("poisoned-prefix", "400"), ("detections", "413"), ("oversized", "413"), ("nested", "400")):
        assert got.get(f"{kind}: {code}", 0) > 0 and not any(k.startswith(kind) and k != f"{kind}: {code}" for k in got)
    assert got.get("bold: 200", 0) > 0 and got.get("fresh-key: 200", 0) > 0  # no limit set: each answered
