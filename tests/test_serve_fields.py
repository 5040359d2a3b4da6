"""Properties of serve's request handling that hold for every route, body encoding and text (issue 32): every
field of every body reaches the decoder, every route that reads q or a file enforces keys and limits, translated
text is escaped in any HTML, and kept elements are never translated."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from bs4 import BeautifulSoup
from fakes import FunctionTranslator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_markup import _file
from test_serve import Running, _call, _multipart

from mtx.documents.markup import HtmlPage
from mtx.serve.service import Limits, Service


class Recording(FunctionTranslator):
    """Upper-cases, and remembers the options and target prefixes each batch was decoded with."""

    def __init__(self):
        super().__init__(str.upper)
        self.calls: list[tuple] = []

    def decode_ids(self, ids, *, decode=None, forced=None, terms=None, **options):
        self.calls.append((decode, forced, terms))
        return super().decode_ids(ids, decode=decode, forced=forced, **options)


def _encoded(fields: dict, how: str) -> tuple[bytes, str]:
    if how == "json":
        return json.dumps(fields).encode(), "application/json"
    if how == "form":
        return urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded"
    return _multipart(fields)


@pytest.fixture(scope="module")
def recording():
    tr = Recording()
    with Running(Service(tr, [("de", "en")], Limits(wait_ms=1))) as r:
        r.translator = tr
        yield r


FIELDS = [
    ("seed", 7, lambda d, f: d.seed == 7 and d.sample == "topk=3"),
    ("temperature", 2.5, lambda d, f: d.temperature == 2.5),
    ("sample", "topp=0.5", lambda d, f: d.sample == "topp=0.5"),
    ("alternatives", 2, lambda d, f: d.nbest == 3 and d.beam >= 3),
    ("prefix", "Ein", lambda d, f: f is not None and f[0] != []),
    ("no_repeat_ngram", 3, lambda d, f: d.no_repeat_ngram == 3 and not d.sample),
    ("repetition_penalty", 1.25, lambda d, f: d.repetition_penalty == 1.25),
    ("glossary", {"json": {"hund": "hound"}, "form": "hund\thound"}, lambda d, f, t: t is not None and t[0] != []),
]


@pytest.mark.parametrize("how", ["json", "form", "multipart"])
@pytest.mark.parametrize("field, value, reached", FIELDS, ids=[f[0] for f in FIELDS])
def test_every_field_of_every_body_reaches_the_decoder(recording, how, field, value, reached):
    if isinstance(value, dict) and "form" in value:  # a glossary: an object in JSON, TSV lines in a form
        value = value["json" if how == "json" else "form"]
    fields = {"q": "ein hund.", "source": "de", "target": "en", field: value}
    if field in ("seed", "temperature"):
        fields["sample"] = "topk=3"
    before = len(recording.translator.calls)
    status, out = _call(recording.port, "/translate", *_encoded(fields, how))
    assert status == 200, out
    decode, forced, terms = recording.translator.calls[before]
    assert reached(decode, forced, terms) if field == "glossary" else reached(decode, forced), (field, decode)


@pytest.mark.parametrize("how", ["json", "form", "multipart"])
def test_each_text_has_its_least_confident_sentences_confidence(recording, how):
    """`confidence`: a text's least confident sentence's (here 1 / its source words); `sentences` (mtx's field,
    in any body): each sentence's translation and confidence, in order."""
    fields = {"q": "Ein Hund. Ein kleiner grauer Hund.", "source": "de", "target": "en"}
    status, out = _call(recording.port, "/translate", *_encoded(fields, how))
    assert status == 200 and out["confidence"] == 0.25 and "sentences" not in out, out
    status, out = _call(recording.port, "/translate", *_encoded(fields | {"sentences": "true"}, how))
    assert status == 200, out
    assert out["sentences"] == [{"text": "EIN HUND.", "confidence": 0.5}, {"text": "EIN KLEINER GRAUER HUND.",
                                                                          "confidence": 0.25}]  # fmt: skip
    texts = ["Ein Hund. Ein kleiner grauer Hund.", "", "katze."]
    status, out = _call(recording.port, "/translate", *_encoded(fields | {"q": texts, "sentences": True}, "json"))
    assert out["confidence"] == [0.25, 1.0, 1.0]  # an empty text: nothing to doubt
    assert [[s["text"] for s in x] for x in out["sentences"]] == [["EIN HUND.", "EIN KLEINER GRAUER HUND."], [],
                                                                  ["KATZE."]]  # fmt: skip
    status, out = _call(recording.port, "/translate", *_encoded(fields | {"sentences": "maybe"}, "json"))
    assert status == 400 and "sentences must be true or false" in out["error"]


ROUTES = {  # every route that reads q or a file, with a request that it answers 200
    "/translate": lambda key: _encoded({"q": "ein hund.", "source": "de", "target": "en", **key}, "json"),
    "/detect": lambda key: _encoded({"q": "ein hund.", **key}, "json"),
    "/translate_file": lambda key: _file("a.txt", b"ein hund.", source="de", target="en", **key),
}


def _post_routes(app) -> set[str]:
    return {r.path for r in app.routes if "POST" in (getattr(r, "methods", None) or ())}


def test_the_list_of_routes_is_every_post_route(recording):
    from mtx.serve.app import make_app

    app = make_app(Service(Recording(), [("de", "en")], Limits(metrics=False)), "m").app  # Starlette, under Logged
    assert _post_routes(app) == {*ROUTES, "/score"}  # /score: mtx's engine only; its checks in test_serve.py


@pytest.mark.parametrize("route", list(ROUTES))
def test_every_route_enforces_keys_sizes_and_rates(route):
    key = "a-valid-key-1234"
    with Running(Service(Recording(), [("de", "en")], Limits(max_chars=20, req_limit=3, keys=frozenset({key})))) as r:
        assert _call(r.port, route, *ROUTES[route]({}))[0] == 403
        assert _call(r.port, route, *ROUTES[route]({"api_key": "wrong-key-1234"}))[0] == 403
        assert _call(r.port, route, *ROUTES[route]({"api_key": key}))[0] == 200
        assert _call(r.port, route, *ROUTES[route]({"api_key": key}))[0] == 200
        assert _call(r.port, route, *ROUTES[route]({"api_key": key}))[0] == 200
        assert _call(r.port, route, *ROUTES[route]({"api_key": key}))[0] == 429
    with Running(Service(Recording(), [("de", "en")], Limits(max_chars=5))) as r:
        assert _call(r.port, route, *ROUTES[route]({}))[0] == 413


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40),
       st.text(alphabet="<>&\"' abc/=", min_size=1, max_size=20))  # fmt: skip
def test_translated_text_is_escaped_in_any_page(source, injected):
    """Whatever the source and whatever the translation holds (tags, entities, quotes), the page keeps its own
    elements only, and each run's text reads as the translation."""
    page = HtmlPage(f"<p>{_escape(source)}</p>")
    translations = [t + " " + injected for t in page.texts]
    out = page.render(translations)
    soup = BeautifulSoup(out, "html.parser")
    assert [t.name for t in soup.find_all(True)] == (["p"] if page.texts else ["p"])
    if page.texts:
        assert " ".join(soup.p.get_text().split()) == " ".join(translations[0].split())


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@pytest.mark.parametrize("tag", ["script", "style", "code", "pre", "textarea", "kbd", "samp", "var"])
def test_kept_elements_are_never_translated(tag):
    page = HtmlPage(f"<div>Ein Hund <{tag}>Ein Hund</{tag}> rennt.</div><{tag}>Katze</{tag}>")
    assert all("Katze" not in t for t in page.texts) and all(t.count("Hund") <= 1 for t in page.texts)
    out = page.render([t.upper() for t in page.texts])
    assert f"<{tag}>Ein Hund</{tag}>" in out and f"<{tag}>Katze</{tag}>" in out


def test_requests_batched_together_keep_their_own_options():
    """Two requests collected in one batch with other decoding options are decoded each with its own (never the
    first one's)."""
    from concurrent.futures import ThreadPoolExecutor

    tr = Recording()
    # the batch closes when both are in (3 pieces each, the budget 6), however long the second takes
    with (
        Running(Service(tr, [("de", "en")], Limits(wait_ms=60_000, batch_tokens=6))) as r,
        ThreadPoolExecutor(2) as pool,
    ):
        asks = [{"sample": "topk=3", "seed": 5}, {"alternatives": 2}]
        base = {"q": "ein hund.", "source": "de", "target": "en"}
        got = list(pool.map(lambda a: _call(r.port, "/translate", *_encoded({**base, **a}, "json")), asks))
    assert [g[0] for g in got] == [200, 200] and len(tr.calls) == 2
    options = sorted((d for d, _, _ in tr.calls), key=lambda d: d.nbest)
    assert (options[0].sample, options[0].seed, options[1].nbest, options[1].sample) == ("topk=3", 5, 3, "")


def test_a_client_gone_mid_search_is_named_to_the_running_search():
    """The batcher tells the running `decode_ids` which inputs are no longer wanted (their rows then leave the
    search: tests/test_search.py) when a client hangs up while its sentences decode."""
    import socket
    import threading
    import time

    class Waiting(Recording):
        def __init__(self):
            super().__init__()
            self.started, self.heard = threading.Event(), set()

        def decode_ids(self, ids, *, dropped=None, **options):
            self.started.set()
            deadline = time.monotonic() + 10
            while not dropped() and time.monotonic() < deadline:
                time.sleep(0.01)
            self.heard = set(dropped())
            return super().decode_ids(ids, **options)

    tr = Waiting()
    with Running(Service(tr, [("de", "en")], Limits(wait_ms=1))) as r:
        body, ctype = _encoded({"q": "Ein Hund. Zwei Katzen. Drei Mäuse.", "source": "de", "target": "en"}, "json")
        head = f"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}"
        with socket.create_connection(("127.0.0.1", r.port)) as c:
            c.sendall(head.encode() + b"\r\n\r\n" + body)
            assert tr.started.wait(30)
        for _ in range(1000):
            if tr.heard:
                break
            time.sleep(0.01)
    assert tr.heard == {0, 1, 2}


def test_plain_text_keeps_its_lines_blank_lines_and_their_edges():
    from mtx.documents.formats import TextDocument

    text = "  Ein Hund rennt. Eine Katze schläft.  \n\n\tZwei Kinder.\r"
    doc = TextDocument(text, "de")
    assert doc.sentences == ["Ein Hund rennt.", "Eine Katze schläft.", "Zwei Kinder."]
    assert (
        doc.render([s.upper() for s in doc.sentences]) == "  EIN HUND RENNT. EINE KATZE SCHLÄFT.  \n\n\tZWEI KINDER.\r"
    )
