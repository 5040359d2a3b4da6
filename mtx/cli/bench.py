"""`mtx bench decode | serve | train | data`: benchmarks that print figures as JSON lines."""

import json
from pathlib import Path

import typer
from typer import Option as Opt

from mtx.cli import common as o
from mtx.data.bench import bench as bench_data
from mtx.decode.bench import decode as bench_decode
from mtx.errors import UsageError
from mtx.serve import loadtest, soak
from mtx.train.bench import bench as bench_train

TEST = "test_2016_flickr"
SETTINGS = "Comma-separated: greedy, beam, beam_nocache."
PAIRS = "Make a corpus of this many pairs (the default corpus' train, repeated)."


def decode(
    model: list[Path] = o.MODELS,
    data: Path | None = o.BENCH_DATA,
    split: str = Opt(TEST, help="Split to decode."),
    beam: int = Opt(5, help="Beam size for the beam settings."),
    batch_tokens: int | None = o.BATCH_TOKENS,
    device: str = o.DEVICE,
    settings: str | None = Opt(None, help=SETTINGS, show_default="all; ct2: greedy,beam"),
    limit: int = Opt(0, help="Decode only the first N sentences (0 = all)."),
    precision: str = Opt(
        "fp32", help="fp32; int8 (mtx: int8 linear layers; ct2: its int8); bf16; fp16. Several: comma-separated."
    ),  # fmt: skip
    engine: str = Opt("mtx", help="mtx, or ct2 (CTranslate2; exported on first use); or both: mtx,ct2."),
    shortlist: str = Opt(
        "off", help="off, on (only the shortlist of a batch's sources; ct2: its vocabulary map), or off,on."
    ),  # fmt: skip
    rounds: int = Opt(1, help="Time every combination this many times, alternating; report the median."),
) -> None:
    """Decode a test set greedily, with beam search and the KV cache, and without it (under each engine,
    precision and shortlist named); one JSON line each."""
    for rec in bench_decode(model, data, split, device, beam, batch_tokens, settings, limit, precision, engine,
                            shortlist, rounds):  # fmt: skip
        typer.echo(json.dumps(rec))


def serve(
    model: Path = o.MODEL,
    data: Path | None = o.BENCH_DATA,
    split: str = Opt(TEST, help="Split whose source sentences the clients send."),
    engine: str = Opt("mtx", help="mtx or ct2."),
    beam: int = Opt(5, help="Beam size (1 = greedy)."),
    clients: int = Opt(32, help="Concurrent clients, one sentence a request."),
    seconds: float = Opt(30.0, help="How long the clients run."),
    device: str = Opt("cpu", help="auto, cpu or cuda."),
    batch_wait_ms: float | None = Opt(None, help="The server's --batch-wait-ms."),
    workers: int | None = Opt(None, help="The server's --workers.", show_default="its default"),
    hostile: bool = Opt(False, help="Hostile clients too (oversized, nested, slow, hanging up): soak figures."),
    metrics: bool = Opt(True, help="The server's /metrics (--no-metrics: the server's --no-metrics)."),
    memory: int = Opt(0, help="The server's --memory (0: off, so that decoding is measured)."),
    repeats: float = Opt(0.0, help="Share of requests that repeat a sentence sent before (e.g. 0.3)."),
    precision: str | None = Opt(None, help="The server's --precision.", show_default="its default"),
    shortlist: bool | None = Opt(
        None, "--shortlist/--no-shortlist", help="The server's --shortlist.", show_default="its default"
    ),  # fmt: skip
) -> None:
    """Start `mtx serve` on loopback, run concurrent clients for a while; one JSON line: requests/s, latency
    percentiles, errors."""
    if hostile and (memory or repeats):
        raise UsageError("--hostile measures decoding under attack: leave out --memory and --repeats")
    rec = (soak.bench(model, data, split, engine, beam, clients, seconds, device, batch_wait_ms, workers, metrics)
           if hostile else loadtest.bench(model, data, split, engine, beam, clients, seconds, device, batch_wait_ms,
                                          workers, metrics, memory, repeats, precision, shortlist))  # fmt: skip
    typer.echo(json.dumps(rec))


def train(
    data: Path | None = o.BENCH_DATA,
    device: str = o.DEVICE,
    batch_tokens: int | None = Opt(None, help="Training batch size in tokens.", show_default="the preset's"),
    steps: int = Opt(50, help="Timed steps."),
    warmup: int | None = Opt(None, help="Untimed steps first.", show_default="10; on CUDA an epoch, at most 500"),
    config: Path | None = o.CONFIG,
    set_: list[str] | None = Opt(None, "--set", help="Override, e.g. model.d_model=512."),
    peak_tflops: float | None = Opt(None, help="Peak for MFU.", show_default="989, bf16 dense H100/H200 SXM, on CUDA"),
    compile_: bool = Opt(False, "--compile", help="torch.compile the training step."),
) -> None:
    """Training throughput of the device's preset (or a config): one JSON line."""
    typer.echo(json.dumps(bench_train(data, device, batch_tokens, steps, warmup, config, set_, peak_tflops, compile_)))


def data(
    pairs: int | None = Opt(None, help=PAIRS),
    data: str | None = Opt(None, help="Or read this corpus (any --data form of mtx train)."),
    src: str = Opt("de", help="Source language code."),
    tgt: str = Opt("en", help="Target language code."),
    workdir: Path | None = Opt(None, help="Where to write the made corpus and the caches.", show_default="a temp dir"),
    set_: list[str] | None = Opt(None, "--set", help="Override, e.g. data.num_proc=1."),
) -> None:
    """Prepare a corpus as `mtx train` does, cold (empty cache) and cached, each in a fresh process: one JSON
    line each with the seconds of reading, tokenizer training and encoding, peak RSS, pairs/s and padding."""
    for rec in bench_data(pairs, data, (src, tgt), workdir, set_ or []):
        typer.echo(json.dumps(rec))
