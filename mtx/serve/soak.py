"""`mtx bench serve --hostile`: normal clients (loadtest.py) beside hostile ones, for a while: bodies far over the
limit, deeply nested JSON, requests that stop half-way, clients that send much and hang up, bold HTML paragraphs
of 104 words, poisoned prefixes (a lone surrogate), a made-up API key and X-Forwarded-For per request, detections
of 20,000 texts. One JSON line: the
normal clients' answers (all should succeed) and latency, the hostile ones' refusals by status, and the server's
resident memory when the clients start and when they end."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from pathlib import Path

from mtx.measure import percentile_ms
from mtx.serve.loadtest import health, normal_client, setup, start_server, stop_server

HEAD = b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
KINDS = ("oversized", "nested", "slow", "hang-up", "bold", "poisoned-prefix", "fresh-key", "detections")
BOLD = " ".join(["Ein kleiner Hund rennt mit einem roten Ball über die grüne Wiese, und zwei Kinder lachen laut."] * 6)


def _body(head: bytes, body: bytes) -> bytes:
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _send(kind: str, src: str, tgt: str) -> bytes:
    """What a hostile client of `kind` sends once."""
    if kind == "oversized":
        return HEAD + b"Content-Length: 200000000\r\n\r\n" + b"[" * 65536
    if kind == "nested":
        return _body(HEAD, b"[" * 60000)
    if kind == "slow":
        return HEAD + b"Content-Length: 1000\r\n\r\n" + b'{"q": '
    if kind == "hang-up":
        many = json.dumps(
            {"q": " ".join(f"Ein Hund rennt {i} Meter." for i in range(60)), "source": src, "target": tgt}
        )
        return _body(HEAD, many.encode())
    if kind == "bold":
        page = json.dumps({"q": f"<p><b>{BOLD}</b></p>", "source": src, "target": tgt, "format": "html"})
        return _body(HEAD, page.encode())
    if kind == "poisoned-prefix":
        return _body(HEAD, b'{"q": "Ein Hund.", "source": "%s", "target": "%s", "prefix": "\\ud800"}' % (
            src.encode(), tgt.encode()))  # fmt: skip
    if kind == "fresh-key":
        ask = {"q": "Ein Hund.", "source": src, "target": tgt, "api_key": secrets.token_hex(8)}
        forwarded = b"X-Forwarded-For: 10.%d.%d.%d\r\n" % tuple(secrets.randbelow(256) for _ in range(3))
        return _body(HEAD + forwarded, json.dumps(ask).encode())
    return _body(HEAD.replace(b"/translate", b"/detect"), b'{"q": [' + b",".join([b'""'] * 20000) + b"]}")


async def _status(reader) -> str:
    line = await asyncio.wait_for(reader.readline(), 60)
    return line.split()[1].decode() if line.startswith(b"HTTP/") else "closed"


async def _hostile(kind: str, port: int, src: str, tgt: str, until: float, codes: Counter) -> None:
    """One hostile client, over and over until `until`; `codes` counts what the server answered."""
    while time.perf_counter() < until:
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_send(kind, src, tgt))
            await writer.drain()
            if kind == "hang-up":
                await asyncio.sleep(0.3)
                codes[f"{kind}: hung up"] += 1
            else:
                codes[f"{kind}: {await _status(reader)}"] += 1
        except (OSError, TimeoutError):
            codes[f"{kind}: connection error"] += 1
        finally:
            if writer is not None:
                writer.close()


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return round(kb / 1024, 1)
    except (OSError, StopIteration, ValueError):
        return None


def soak(model: Path, sentences: list[str], src: str, tgt: str, engine: str, beam: int, clients: int,
         seconds: float, device: str, extra: list[str]) -> dict:  # fmt: skip
    """`clients` normal clients and one hostile client of each kind for `seconds` against `mtx serve`."""
    proc, port = start_server(model, engine, beam, device, extra)
    try:

        async def main() -> dict:
            warm = {"clients": 1, "latencies": [], "errors": []}
            await normal_client(0, port, sentences, src, tgt, time.perf_counter() + 1.0, warm)
            out, codes = {"clients": clients, "latencies": [], "errors": []}, Counter()
            rss_start, until = _rss_mb(proc.pid), time.perf_counter() + seconds
            normal = [normal_client(i, port, sentences, src, tgt, until, out) for i in range(clients)]
            hostile = [_hostile(k, port, src, tgt, until, codes) for k in KINDS]
            await asyncio.gather(*normal, *hostile)
            return out | {"codes": codes, "rss_start": rss_start, "rss_end": _rss_mb(proc.pid), "after": health(port)}

        r = asyncio.run(main())
    finally:
        code = stop_server(proc)
    n, failed = len(r["latencies"]), len(r["errors"])
    return {
        "engine": engine,
        "clients": clients,
        "seconds": seconds,
        "normal_requests": n + failed,
        "normal_answered": n,
        "normal_success": round(n / max(n + failed, 1), 4),
        **{f"latency_ms_p{round(q * 100)}": percentile_ms(r["latencies"], q) for q in (0.5, 0.99)},
        "hostile": dict(sorted(r["codes"].items())),
        "server_rss_mb_start": r["rss_start"],
        "server_rss_mb_end": r["rss_end"],
        "dropped_sentences": r["after"].get("dropped_sentences"),
        "refused_busy": r["after"].get("refused_busy"),
        "server_exit": code,
    }


def bench(model: Path, data_dir: Path | None, split: str, engine: str, beam: int, clients: int, seconds: float,
          device: str, batch_wait_ms: float | None, workers: int | None, metrics: bool = True) -> dict:  # fmt: skip
    """`mtx bench serve --hostile`: `soak` on the sentences and with the server options of loadtest's `setup`."""
    sentences, src, tgt, extra = setup(model, data_dir, split, engine, beam, clients, seconds, batch_wait_ms, workers,
                                       metrics)  # fmt: skip
    rec = soak(model, sentences, src, tgt, engine, beam, clients, seconds, device, extra)
    return {"pair": f"{src}-{tgt}", "split": split, **rec}
