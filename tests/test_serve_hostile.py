"""`mtx serve` against clients that misbehave (issue 22, items 1-6): oversized and nested bodies, requests that
never arrive whole, more work than the queue holds, clients that hang up, foreign Host headers; loopback only.
Deterministic: a translator that waits on events stands in for the model where timing matters."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from test_serve import Running, _call, _post

from mtx.config import DecodeConfig
from mtx.decode.translator import BatchTranslator, Translation
from mtx.errors import UsageError
from mtx.serve import app as app_mod
from mtx.serve import transport
from mtx.serve.app import make_app, server
from mtx.serve.service import Limits, Service


class Tok:  # one piece a word
    def encode(self, lines):
        return [[7] * len(s.split()) for s in lines]


class Gate(BatchTranslator):
    """Translates a line into itself, upper-cased, once `release` is set; remembers what it was asked."""

    def __init__(self):
        self.tokenizer, self.cfg, self.batch_tokens = Tok(), DecodeConfig(beam=1), 1000
        self.release, self.started, self.seen = threading.Event(), threading.Event(), []

    def translate(self, lines, **options):
        self.seen.extend(lines)
        self.started.set()
        self.release.wait(30)
        return [Translation(x.upper(), [(x.upper(), 0.0)]) for x in lines]


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
        {"translatedText": "EIN HUND."},
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
            q = " ".join(f"Satz {i} {k}." for k in range(5))
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
        body = json.dumps({"q": " ".join(f"Satz {k}." for k in range(70)), "source": "de", "target": "en"})
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
        assert _post(r.port, {"q": "b.", "source": "de", "target": "en"}) == (200, {"translatedText": "B."})
    assert service.queued == 0 and gate.seen == ["a.", "b."]  # nothing was decoded for nobody


def test_a_foreign_host_header_is_refused():
    from mtx.serve.app import HostCheck

    gate = Gate()
    gate.release.set()
    sock_app = HostCheck(make_app(Service(gate, [("de", "en")], Limits(wait_ms=1)), "m"), ["localhost", "127.0.0.1"])
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

    asyncio.run(asyncio.wait_for(app_mod._hung_up(Request()), 5))
