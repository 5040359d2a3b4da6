"""`mtx serve` against clients that misbehave (issue 22, items 1-6): oversized and nested bodies, requests that
never arrive whole, more work than the queue holds, clients that hang up, foreign Host headers; loopback only.
Deterministic: a translator that waits on events stands in for the model where timing matters."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.request

import pytest
from fakes import FunctionTranslator
from test_serve import Running, _call, _post

from mtx.errors import UsageError
from mtx.serve import app as app_mod
from mtx.serve import routes, transport
from mtx.serve.app import make_app, server
from mtx.serve.service import Limits, Service


class Gate(FunctionTranslator):
    """Translates a line into itself, upper-cased, once `release` is set; remembers what it was asked."""

    def __init__(self):
        super().__init__(str.upper)
        self.release, self.started = threading.Event(), threading.Event()

    def decode_ids(self, ids, **options):
        self.started.set()
        self.release.wait(30)
        return super().decode_ids(ids, **options)


def _raw(port: int, data: bytes, read: bool = True, timeout: float = 30) -> bytes:
    """Send bytes on a fresh connection; what comes back until the server closes it (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while read and (chunk := s.recv(65536)):
                out += chunk
        except ConnectionResetError:  # the server stopped reading what we sent: the answer came first
            pass
        return out


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply else 0


@pytest.fixture
def echo():  # noqa: D103
    gate = Gate()
    gate.release.set()
    service = Service(gate, [("de", "en")], Limits(max_chars=200, max_sentences=4, wait_ms=1))
    with Running(service) as r:
        yield r


def test_an_oversized_body_is_refused_before_it_is_read(echo):
    head = b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    reply = _raw(echo.port, head + b"Content-Length: 200000000\r\n\r\n" + b"[" * 1000)  # 200 MB announced, 1 KB sent
    assert _status(reply) == 413 and b"200000000 bytes" in reply
    chunked = (
        head + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(b"4000\r\n" + b"a" * 0x4000 + b"\r\n" for _ in range(8))
    )
    reply = _raw(echo.port, chunked)  # 128 KB in chunks, over the limit of 4 * 200 + 64 KB, no end in sight
    assert _status(reply) == 413 and b"more than" in reply


def test_deeply_nested_json_is_a_400(echo):
    code, out = _call(echo.port, "/translate", b"[" * 60_000)
    assert code == 400 and "nested too deeply" in out["error"]
    assert _post(echo.port, {"q": "ein hund.", "source": "de", "target": "en"}) == (
        200,
        {"translatedText": "EIN HUND.", "confidence": 0.5},
    )


def test_requests_that_never_arrive_whole_are_closed(monkeypatch):
    monkeypatch.setattr(transport, "REQUEST_TIMEOUT", 0.3)
    gate = Gate()
    gate.release.set()
    with Running(Service(gate, [("de", "en")], Limits())) as r:
        t0 = time.perf_counter()
        partial_headers = _raw(r.port, b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        partial_body = _raw(
            r.port,
            b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"q":',
        )
        silent = _raw(r.port, b"")
        assert time.perf_counter() - t0 < 10
        assert _post(r.port, {"q": "ein hund.", "source": "de", "target": "en"})[0] == 200  # the others go on
    assert [_status(x) for x in (partial_headers, partial_body, silent)] == [408, 408, 408]


def _busy(service: Service, gate: Gate, port: int) -> threading.Thread:
    """A request ("a.") that the batcher is decoding (until `gate.release`), so that the next ones wait."""
    first = threading.Thread(target=_post, args=(port, {"q": "a.", "source": "de", "target": "en"}))
    first.start()
    assert gate.started.wait(30)
    return first


def _until(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there"
        time.sleep(0.01)


def test_more_work_than_the_queue_holds_is_a_503_at_once():
    gate = Gate()
    service = Service(gate, [("de", "en")], Limits(max_sentences=128, wait_ms=1, max_queue=10))
    with Running(service) as r:
        first = _busy(service, gate, r.port)
        answers: list = []

        def five(i: int) -> None:
            q = " ".join(f"Satz {i} {k} endet hier." for k in range(5))
            answers.append(_post(r.port, {"q": q, "source": "de", "target": "en"}))

        clients = [threading.Thread(target=five, args=(i,)) for i in range(2)]
        for t in clients:
            t.start()
        _until(lambda: service.queued == 10)  # the queue is full
        status, out = _post(r.port, {"q": "Noch einer.", "source": "de", "target": "en"})
        assert status == 503 and "busy" in out["error"]
        gate.release.set()
        for t in [first, *clients]:
            t.join(30)
    assert [a[0] for a in answers] == [200, 200] and service.stats["refused_busy"] == 1  # admitted: answered


def test_work_for_clients_that_hung_up_is_dropped():
    gate = Gate()
    service = Service(gate, [("de", "en")], Limits(max_sentences=128, wait_ms=1))
    with Running(service) as r:
        first = _busy(service, gate, r.port)
        body = json.dumps({"q": " ".join(f"Satz {k} endet hier." for k in range(70)), "source": "de", "target": "en"})
        head = "POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        request = f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode()
        clients = [socket.create_connection(("127.0.0.1", r.port)) for _ in range(8)]
        for c in clients:  # 8 clients send 70 sentences each ...
            c.sendall(request)
        _until(lambda: service.queued == 560)
        for c in clients:  # ... and hang up
            c.close()
        _until(lambda: service.stats["dropped_sentences"] == 560)
        gate.release.set()
        first.join(30)
        assert _post(r.port, {"q": "b.", "source": "de", "target": "en"}) == (
            200,
            {"translatedText": "B.", "confidence": 1.0},
        )
    assert service.queued == 0 and gate.seen == ["a.", "b."]  # nothing was decoded for nobody


def test_a_foreign_host_header_is_refused():
    gate = Gate()
    gate.release.set()
    sock_app = make_app(Service(gate, [("de", "en")], Limits(wait_ms=1)), "m", ["localhost", "127.0.0.1"])
    srv = server(sock_app)
    sock = app_mod.listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if srv.started:
                break
            time.sleep(0.05)
        ask = b"GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
        assert _status(_raw(port, ask % b"evil.example:8000")) == 400
        assert _status(_raw(port, ask % b"localhost:5000")) == 200
        assert _status(_raw(port, ask % b"127.0.0.1")) == 200
        health = json.loads(_raw(port, ask % b"localhost").split(b"\r\n\r\n", 1)[1])
        assert health["model"] == "m"  # a name, never a path
    finally:
        srv.should_exit = True
        thread.join(30)


@pytest.mark.parametrize(
    "limits, words",
    [
        (dict(wait_ms=float("inf")), "finite"),
        (dict(wait_ms=float("nan")), "finite"),
        (dict(max_queue=0), "--max-queue"),
    ],
)
def test_limits_that_could_never_be_met(limits, words):
    with pytest.raises(UsageError, match=words):
        Limits(**limits)


def test_a_port_out_of_range_is_one_line(tiny_model):
    from typer.testing import CliRunner

    from mtx.cli.main import app

    r = CliRunner().invoke(app, ["serve", "--model", str(tiny_model), "--port", "70000"])
    assert r.exit_code == 2 and "--port 70000" in r.stderr and "Traceback" not in r.output


def test_hung_up_detects_a_disconnect():
    class Request:
        def __init__(self):
            self.messages = [{"type": "http.request", "body": b""}, {"type": "http.disconnect"}]

        async def receive(self):
            return self.messages.pop(0)

    asyncio.run(asyncio.wait_for(routes._hung_up(Request()), 5))


# issue 31: each fault a client could cause, refused before anything is queued


@pytest.fixture
def echo_small():
    gate = Gate()
    gate.release.set()
    service = Service(gate, [("de", "en")], Limits(max_chars=6000, max_sentences=8, wait_ms=1, max_texts=4))
    with Running(service) as r:
        r.service = service
        yield r


def _json(port: int, path: str, text: str) -> tuple[int, dict]:
    """A JSON body written by hand (a lone surrogate such as \\ud800 cannot be made by json.dumps of a str)."""
    return _call(port, path, text.encode())


@pytest.mark.parametrize(
    "path, body, words",
    [
        ("/translate", '{"q": "ein hund.", "source": "de", "target": "en", "prefix": "\\ud800"}', "prefix"),
        ("/translate", '{"q": "\\ud800", "source": "de", "target": "en"}', "q must"),
        ("/translate", '{"q": "\\ud800", "source": "de", "target": "en", "format": "html"}', "q must"),
        ("/score", '{"q": "a", "translation": "\\udfff", "source": "de", "target": "en"}', "translation"),
        ("/translate", '{"q": "a.", "source": "de", "target": "en", "sample": "topk=5", "temperature": 1e-308}',
         "temperature"),
        ("/translate", '{"q": "' + "<b>" * 400 + 'x", "source": "de", "target": "en", "format": "html"}', "nests"),
        ("/translate", '{"q": "' + "<div>" * 990 + 'x", "source": "de", "target": "en", "format": "html"}', "nests"),
        ("/translate", '{"q": "a.", "source": "de", "target": "en", "prefix": "' + "x" * 6000 + '"}', "characters"),
        ("/detect", '{"q": [' + ",".join(['""'] * 20000) + "]}", "texts"),
        ("/translate", '{"q": ["a", "b", "c", "d", "e"], "source": "de", "target": "en"}', "5 texts"),
    ],
    ids=["prefix-surrogate", "q-surrogate", "html-surrogate", "score-surrogate", "tiny-temperature", "nested-b",
         "nested-div", "long-prefix", "20000-detections", "too-many-texts"],
)  # fmt: skip
def test_what_a_client_sends_is_a_4xx_naming_it(echo_small, path, body, words):
    code, out = _json(echo_small.port, path, body)
    assert 400 <= code < 500 and words in out["error"], (code, out)
    assert _post(echo_small.port, {"q": "ein hund.", "source": "de", "target": "en"}) == (
        200,
        {"translatedText": "EIN HUND.", "confidence": 0.5},
    )


def test_a_poisoned_prefix_never_fails_the_others_in_its_batch():
    """Requests collected in one batch: the one with a bad prefix is refused alone (item 2)."""
    gate = Gate()
    service = Service(gate, [("de", "en")], Limits(wait_ms=200))
    with Running(service) as r:
        first = _busy(service, gate, r.port)
        bad = '{"q": "b.", "source": "de", "target": "en", "prefix": "\\ud800"}'
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(_json(r.port, "/translate", bad)))]
        threads += [threading.Thread(target=lambda: results.append(_post(r.port, {"q": "c.", "source": "de",
                                                                                  "target": "en"})))]  # fmt: skip
        for t in threads:
            t.start()
        time.sleep(0.3)
        gate.release.set()
        for t in [first, *threads]:
            t.join(30)
    assert sorted(code for code, _ in results) == [200, 400]


def test_made_up_keys_and_forwarded_addresses_share_the_clients_count():
    """Without --api-keys, a key names nobody; X-Forwarded-For is not believed without --forwarded-allow-ips
    (item 3)."""
    gate = Gate()
    gate.release.set()
    with Running(Service(gate, [("de", "en")], Limits(wait_ms=1, req_limit=3))) as r:
        codes = []
        for k in range(5):
            body = json.dumps({"q": "a.", "source": "de", "target": "en", "api_key": f"made-up-{k}"}).encode()
            head = (b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"X-Forwarded-For: 10.0.0.%d\r\nConnection: close\r\n" % k)  # fmt: skip
            codes.append(_status(_raw(r.port, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)))
    assert codes == [200, 200, 200, 429, 429]


def test_a_500_is_one_line_with_an_id_and_closes_the_connection(caplog):
    class Broken(Gate):
        def decode_ids(self, ids, **options):
            raise RuntimeError("the model broke")

    with Running(Service(Broken(), [("de", "en")], Limits(wait_ms=1))) as r:
        body = json.dumps({"q": "a.", "source": "de", "target": "en"}).encode()
        head = b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        reply = _raw(r.port, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert _status(reply) == 500 and b"connection: close" in reply.lower() and b"internal error" in reply
    errors = [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert errors and all(rec.exc_info is None and "\n" not in rec.getMessage() for rec in errors)


def test_the_page_and_answers_carry_safe_headers_and_cors_is_off_unless_asked(echo_small):
    with urllib.request.urlopen(f"http://127.0.0.1:{echo_small.port}/", timeout=30) as resp:
        csp = resp.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert b"<script src=" in resp.read()
    ask = b"OPTIONS /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://app.example\r\n"
    ask += b"Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
    assert b"access-control-allow-origin" not in _raw(echo_small.port, ask).lower()
    gate = Gate()
    gate.release.set()
    with Running(Service(gate, [("de", "en")], Limits(cors_origins=("https://app.example",)))) as r:
        assert b"access-control-allow-origin: https://app.example" in _raw(r.port, ask).lower()


def test_downloads_are_kept_per_client():
    from mtx.serve.downloads import FileStore, StoreFull

    store = FileStore(per_client=2, most_chars=100)
    mine = store.put("10.0.0.1", "a.txt", "x")
    for k in range(64):  # another client's many uploads evict only its own
        store.put("10.0.0.2", f"{k}.txt", "y")
    assert store.get(mine) == ("a.txt", "x")
    with pytest.raises(StoreFull):
        store.put("10.0.0.3", "big.txt", "z" * 200)


class Failing(FunctionTranslator):
    """Fails its first batch, then translates into upper case."""

    def __init__(self):
        super().__init__(str.upper)
        self.calls = 0

    def decode_ids(self, ids, **options):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("the engine broke")
        return super().decode_ids(ids, **options)


def test_an_engine_error_is_a_500_and_the_server_goes_on(logs):
    with Running(Service(Failing(), [("de", "en")], Limits(wait_ms=1))) as r:
        status, out = _post(r.port, {"q": "ein hund.", "source": "de", "target": "en"})
        assert status == 500 and out["error"].startswith("internal error") and "RuntimeError" in out["error"]
        assert _post(r.port, {"q": "ein hund.", "source": "de", "target": "en"}) == (
            200,
            {"translatedText": "EIN HUND.", "confidence": 0.5},
        )
    assert any("the engine broke" in x for x in logs)
