"""`mtx serve`."""

from __future__ import annotations

from typing import Annotated

from mtx.cli.common import DEFAULT_MODEL, Device, Model, ModelBeam, Opt, friendly, non_negative, positive
from mtx.serve.app import default_workers
from mtx.serve.app import serve as run_server
from mtx.serve.service import Limits

WORKERS_HELP = "Batches decoded at once, sharing the CPU threads."


@friendly
def serve(
    model: Model = DEFAULT_MODEL,
    engine: Annotated[str, Opt(help="mtx or ct2 (CTranslate2; exports on first use).")] = "mtx",
    host: Annotated[str, Opt(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, Opt(help="Port (0: any free one; the first line printed names it).")] = 5000,
    beam: ModelBeam = None,
    device: Device = "auto",
    max_chars: Annotated[int, Opt(help="Characters per request at most.")] = 5000,
    max_sentences: Annotated[int, Opt(help="Sentences per request at most.")] = 128,
    batch_wait_ms: Annotated[float, Opt(help="How long a batch collects requests.")] = 5.0,
    batch_tokens: Annotated[
        int | None, Opt(help="Source pieces a batch collects at most.", show_default="12,000 / beam")
    ] = None,
    workers: Annotated[int | None, Opt(help=WORKERS_HELP, show_default="2 on a CPU, 1 on a GPU")] = None,
) -> None:
    """Serve the model over HTTP with LibreTranslate's API (POST /translate, GET /languages) and GET /health."""
    positive(max_chars=max_chars, max_sentences=max_sentences)
    non_negative(batch_wait_ms=batch_wait_ms)
    positive(batch_tokens=batch_tokens, workers=workers)
    workers = workers or default_workers(device)
    limits = Limits(max_chars, max_sentences, batch_wait_ms, batch_tokens or 0, workers)
    run_server(model, engine, host, port, beam, device, limits)
