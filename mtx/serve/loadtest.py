"""`mtx bench serve`: start `mtx serve` on loopback, run concurrent clients against it for a while, report.

Each client holds one keep-alive HTTP/1.1 connection and sends one sentence a request (the split's sources, each
client starting at its own offset), the next as soon as the answer arrives. Latency is from sending the request
to reading the whole answer; a request fails when it is not answered 200 with a translatedText string.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from mtx.checkpoint import read_config
from mtx.data.multi30k import default_data_dir
from mtx.data.pairs import pairs_of
from mtx.data.text import read_lines, split_paths
from mtx.decode.load import ENGINES
from mtx.errors import MtxError, UsageError, check_positive
from mtx.measure import percentile_ms


def start_server(model: Path, engine: str, beam: int, device: str, extra: list[str] | None = None):
    """`mtx serve --port 0` in a child process; returns (process, port) once it answers /health."""
    cmd = [sys.executable, "-m", "mtx", "serve", "--model", str(model), "--engine", engine, "--port", "0"]
    cmd += ["--beam", str(beam), "--device", device, *(extra or [])]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    port = None
    lines = []
    for line in proc.stderr:  # the exporter may speak first; the listening line names the port
        lines.append(line.rstrip())
        if "listening on http://" in line:
            port = int(line.split("listening on http://", 1)[1].split()[0].rsplit(":", 1)[1])
            break
    if port is None:
        proc.wait()
        raise MtxError("mtx serve did not start: " + " | ".join(lines[-3:]))
    # keep draining its stderr so that it never blocks on a full pipe
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.05)
    stop_server(proc)
    raise MtxError(f"mtx serve on port {port} did not answer /health")


def stop_server(proc: subprocess.Popen, timeout: float = 60) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


async def _request(reader, writer, port: int, body: bytes) -> tuple[int, bytes]:
    writer.write(
        b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (port, len(body), body)
    )
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


class Workload:
    """The sentences the clients send, in turn (shared by them): each a new one of `sentences`, or with
    probability `repeats` one sent before (a translation memory's workload)."""

    def __init__(self, sentences: list[str], repeats: float = 0.0, seed: int = 0):
        self.fresh, self.repeats, self.rng = sentences, repeats, random.Random(seed)
        self.sent: list[str] = []
        self.counts = {"new": 0, "repeated": 0}

    def next(self) -> str:
        if self.sent and self.rng.random() < self.repeats:
            self.counts["repeated"] += 1
            return self.rng.choice(self.sent)
        s = self.fresh[len(self.sent) % len(self.fresh)]
        self.sent.append(s)
        self.counts["new"] += 1
        return s


async def normal_client(i: int, port: int, sentences: list[str], src: str, tgt: str, until: float, out: dict,
                        workload: Workload | None = None) -> None:  # fmt: skip
    """One client: a sentence a request (of `sentences` from its own offset, or the `workload`'s next), the next
    as soon as the answer comes, until `until`; latencies of the answered requests and of the failed ones into
    `out`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    k = i * len(sentences) // max(out["clients"], 1)
    try:
        while time.perf_counter() < until:
            q = workload.next() if workload is not None else sentences[k % len(sentences)]
            body = json.dumps({"q": q, "source": src, "target": tgt}).encode()
            k += 1
            t0 = time.perf_counter()
            try:
                status, data = await _request(reader, writer, port, body)
                ok = status == 200 and isinstance(json.loads(data).get("translatedText"), str)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                ok = False
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            out["latencies" if ok else "errors"].append(time.perf_counter() - t0)
    finally:
        writer.close()


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
        return json.loads(r.read())


def run(
    model: Path,
    sentences: list[str],
    src: str,
    tgt: str,
    engine: str = "mtx",
    beam: int = 5,
    clients: int = 32,
    seconds: float = 30.0,
    device: str = "cpu",
    extra: list[str] | None = None,
    repeats: float = 0.0,
) -> dict:
    """Serve `model`, run `clients` clients for `seconds` (after a warm-up request each), and report; `repeats`:
    the share of requests that repeat a sentence sent before (else each client goes through `sentences` from its
    own offset)."""
    proc, port = start_server(model, engine, beam, device, extra)
    try:

        async def main() -> dict:
            warm = {"clients": clients, "latencies": [], "errors": []}
            await normal_client(0, port, sentences, src, tgt, time.perf_counter() + 1.0, warm)  # warm-up, one client
            before = health(port)
            out = {"clients": clients, "latencies": [], "errors": []}
            t0 = time.perf_counter()
            until = t0 + seconds
            work = Workload(sentences, repeats) if repeats else None
            await asyncio.gather(
                *(normal_client(i, port, sentences, src, tgt, until, out, work) for i in range(clients))
            )
            out["workload"] = work.counts if work else None
            out["wall"] = time.perf_counter() - t0
            out["before"], out["after"] = before, health(port)
            return out

        try:  # the clients share the CPU with the server: the faster event loop where it is installed
            import uvloop

            r = uvloop.run(main())
        except ImportError:
            r = asyncio.run(main())
    finally:
        code = stop_server(proc)
    lat, n, wall = r["latencies"], len(r["latencies"]), r["wall"]

    batches = r["after"]["batches"] - r["before"]["batches"]
    served = r["after"]["sentences"] - r["before"]["sentences"]
    return {
        "engine": engine,
        "beam": beam,
        "clients": clients,
        "seconds": round(wall, 2),
        "requests": n,
        "errors": len(r["errors"]),
        "requests_per_s": round(n / wall, 1),
        "sents_per_s": round(n / wall, 1),  # one sentence a request
        **{f"latency_ms_p{round(q * 100)}": percentile_ms(lat, q) for q in (0.5, 0.9, 0.99)},
        "mean_batch_sentences": round(served / batches, 1) if batches else None,
        "repeats": repeats,
        **({"requests_repeated": r["workload"]["repeated"]} if r["workload"] else {}),
        **{k: r["after"][k] - r["before"][k] for k in ("memory_hit", "memory_miss") if k in r["after"]},
        "workers": r["after"].get("workers"),
        "precision": r["after"].get("precision"),
        "shortlist": r["after"].get("shortlist"),
        "server_exit": code,
        "cpus": os.cpu_count(),
        "device": device,
    }


def setup(model: Path, data_dir: Path | None, split: str, engine: str, beam: int, clients: int, seconds: float,
          batch_wait_ms: float | None, workers: int | None, metrics: bool = True, memory: int = 0,
          precision: str | None = None,
          shortlist: bool | None = None) -> tuple[list[str], str, str, list[str]]:  # fmt: skip
    """(the source sentences of the model's (first) pair in `data_dir`'s `split` (default: the default corpus),
    its source and target, the server's extra options) for `mtx bench serve`, the options checked."""
    check_positive(beam=beam, clients=clients, seconds=seconds)
    check_positive(zero_ok=True, memory=memory)
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: expected mtx or ct2")
    extra = ["--batch-wait-ms", str(batch_wait_ms)] if batch_wait_ms is not None else []
    extra += ["--workers", str(workers)] if workers is not None else []
    extra += [] if metrics else ["--no-metrics"]
    extra += ["--memory", str(memory)]  # 0 unless asked: the clients go round the split, all repeats after a while
    extra += ["--precision", precision] if precision is not None else []  # else the server's default
    extra += [] if shortlist is None else ["--shortlist" if shortlist else "--no-shortlist"]
    src, tgt = pairs_of(read_config(model)[0].data)[0]
    sentences = [s for s in read_lines(split_paths(data_dir or default_data_dir(), split, src, tgt)[0]) if s.strip()]
    return sentences, src, tgt, extra


def bench(model: Path, data_dir: Path | None, split: str, engine: str, beam: int, clients: int, seconds: float,
          device: str, batch_wait_ms: float | None, workers: int | None, metrics: bool = True, memory: int = 0,
          repeats: float = 0.0, precision: str | None = None, shortlist: bool | None = None) -> dict:  # fmt: skip
    """`mtx bench serve`: `run` on the sentences and with the server options of `setup`; `memory`: the server's
    --memory; `repeats`: the share of requests that repeat an earlier one."""
    if not 0 <= repeats < 1:
        raise UsageError(f"--repeats {repeats}: expected a share from 0 to below 1, e.g. 0.3")
    sentences, src, tgt, extra = setup(model, data_dir, split, engine, beam, clients, seconds, batch_wait_ms, workers,
                                       metrics, memory, precision, shortlist)  # fmt: skip
    rec = run(model, sentences, src, tgt, engine, beam, clients, seconds, device, extra, repeats)
    return {"pair": f"{src}-{tgt}", "split": split, "metrics": metrics, "memory": memory, **rec}
