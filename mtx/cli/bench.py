"""`mtx bench decode | serve | train | data`: benchmarks that print figures as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mtx.cli.common import (
    DEFAULT_MODEL,
    BatchTokens,
    BenchData,
    Config,
    Device,
    Model,
    Opt,
    friendly,
    non_negative,
    positive,
)
from mtx.config import overrides
from mtx.data.bench import bench as bench_data
from mtx.data.multi30k import default_data_dir
from mtx.decode.bench import decode as bench_decode
from mtx.decode.bench import settings_of
from mtx.device import resolve_device
from mtx.serve.loadtest import bench as bench_serve
from mtx.train.bench import train_throughput
from mtx.train.presets import configure

app = typer.Typer(help="Benchmarks that print figures as JSON lines.", no_args_is_help=True)
TEST = "test_2016_flickr"
SETTINGS_HELP = "Comma-separated: greedy, beam, beam_nocache."
PEAK_DEFAULT = "989, bf16 dense H100/H200 SXM, on CUDA"
PAIRS_HELP = "Make a corpus of this many pairs (the default corpus' train, repeated)."


@app.command("decode")
@friendly
def decode(
    model: Model = DEFAULT_MODEL,
    data: BenchData = None,
    split: Annotated[str, Opt(help="Split to decode.")] = TEST,
    beam: Annotated[int, Opt(help="Beam size for the beam settings.")] = 5,
    batch_tokens: BatchTokens = None,
    device: Device = "auto",
    settings: Annotated[str | None, Opt(help=SETTINGS_HELP, show_default="all; ct2: greedy,beam")] = None,
    limit: Annotated[int, Opt(help="Decode only the first N sentences (0 = all).")] = 0,
    precision: Annotated[str, Opt(help="fp32, or bf16 / fp16 autocast.")] = "fp32",
    engine: Annotated[str, Opt(help="mtx, or ct2 (CTranslate2; exported on first use).")] = "mtx",
) -> None:
    """Decode a test set greedily, with beam search and the KV cache, and without it; one JSON line each."""
    positive(beam=beam)
    names = settings_of(settings, engine, precision)
    resolve_device(device)
    recs = bench_decode(
        model, data or default_data_dir(), split, device, beam, batch_tokens, names, limit, precision, engine
    )
    for rec in recs:
        typer.echo(json.dumps(rec))


@app.command("serve")
@friendly
def serve(
    model: Model = DEFAULT_MODEL,
    data: BenchData = None,
    split: Annotated[str, Opt(help="Split whose source sentences the clients send.")] = TEST,
    engine: Annotated[str, Opt(help="mtx or ct2.")] = "mtx",
    beam: Annotated[int, Opt(help="Beam size (1 = greedy).")] = 5,
    clients: Annotated[int, Opt(help="Concurrent clients, one sentence a request.")] = 32,
    seconds: Annotated[float, Opt(help="How long the clients run.")] = 30.0,
    device: Device = "cpu",
    batch_wait_ms: Annotated[float | None, Opt(help="The server's --batch-wait-ms.")] = None,
    workers: Annotated[int | None, Opt(help="The server's --workers.", show_default="its default")] = None,
) -> None:
    """Start `mtx serve` on loopback, run concurrent clients for a while; one JSON line: requests/s, latency
    percentiles, errors."""
    positive(beam=beam, clients=clients, seconds=seconds)
    extra = ["--batch-wait-ms", str(batch_wait_ms)] if batch_wait_ms is not None else []
    extra += ["--workers", str(workers)] if workers is not None else []
    data_dir = data or default_data_dir()
    typer.echo(json.dumps(bench_serve(model, data_dir, split, engine, beam, clients, seconds, device, extra)))


@app.command("train")
@friendly
def train(
    data: BenchData = None,
    device: Device = "auto",
    batch_tokens: Annotated[int | None, Opt(help="Training batch size in tokens.", show_default="the preset's")] = None,
    steps: Annotated[int, Opt(help="Timed steps.")] = 50,
    warmup: Annotated[int, Opt(help="Untimed steps first.")] = 10,
    config: Config = None,
    set_: Annotated[list[str] | None, Opt("--set", help="Override, e.g. model.d_model=512.")] = None,
    peak_tflops: Annotated[float | None, Opt(help="Peak for MFU.", show_default=PEAK_DEFAULT)] = None,
    compile_: Annotated[bool, Opt("--compile", help="torch.compile the training step.")] = False,
) -> None:
    """Training throughput of the device's preset (or a config): one JSON line."""
    positive(steps=steps)
    non_negative(warmup=warmup)
    dev = resolve_device(device)
    flags = {"train.device": dev.type, "train.batch_tokens": batch_tokens, "train.compile": compile_ or None}
    cfg = configure(config, overrides(set_, flags), dev.type)
    peak = peak_tflops or (989.0 if dev.type == "cuda" else None)
    typer.echo(json.dumps(train_throughput(cfg, data or default_data_dir(), dev, steps, warmup, peak)))


@app.command("data")
@friendly
def data(
    pairs: Annotated[int | None, Opt(help=PAIRS_HELP)] = None,
    data: Annotated[str | None, Opt(help="Or read this corpus (any --data form of mtx train).")] = None,
    src: Annotated[str, Opt(help="Source language code.")] = "de",
    tgt: Annotated[str, Opt(help="Target language code.")] = "en",
    workdir: Annotated[
        Path | None, Opt(help="Where to write the made corpus and the caches.", show_default="a temp dir")
    ] = None,
    set_: Annotated[list[str] | None, Opt("--set", help="Override, e.g. data.num_proc=1.")] = None,
) -> None:
    """Prepare a corpus as `mtx train` does, cold (empty cache) and cached, each in a fresh process: one JSON
    line each with the seconds of reading, tokenizer training and encoding, peak RSS, pairs/s and padding."""
    for rec in bench_data(pairs, data, (src, tgt), workdir, set_ or []):
        typer.echo(json.dumps(rec))
