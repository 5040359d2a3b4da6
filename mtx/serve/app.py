"""`mtx serve`'s HTTP side: LibreTranslate's routes over a `Service` (service.py), errors as JSON, the uvicorn
server that stops gracefully, and `serve()`, which puts a model behind them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import threading
from pathlib import Path

import torch

from mtx.data import pairs as P
from mtx.decode.load import load
from mtx.device import resolve_device
from mtx.errors import MtxError
from mtx.serve.service import Limits, RequestError, Service, split_sentences

log = logging.getLogger(__name__)


def _texts(data) -> tuple[list[str], bool]:
    """The texts of a request's q, and whether q was one string."""
    if not isinstance(data, dict):
        raise RequestError(400, "the body must be a JSON object")
    q = data.get("q")
    if q is None:
        raise RequestError(400, "missing q: the text to translate (a string or a list of strings)")
    if isinstance(q, str):
        return [q], True
    if isinstance(q, list) and all(isinstance(x, str) for x in q):
        return q, False
    raise RequestError(400, "q must be a string or a list of strings")


def make_app(service: Service, model_name: str = ""):
    """The Starlette app: POST /translate, GET /languages, GET /health."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    lim = service.limits

    async def translate(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise RequestError(415, f"send JSON with Content-Type: application/json (got {ctype or 'none'!r})")
        body = await request.body()
        if len(body) > 4 * lim.max_chars + 65536:
            raise RequestError(413, f"the request has {len(body)} bytes: over the limit of {lim.max_chars} characters")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise RequestError(400, f"malformed JSON: {e}") from None
        texts, one = _texts(data)
        fmt = data.get("format", "text")
        if fmt != "text":
            raise RequestError(400, f"format {fmt!r} is not supported: only text")
        chars = sum(len(t) for t in texts)
        if chars > lim.max_chars:
            raise RequestError(413, f"the request has {chars} characters: over the limit of {lim.max_chars}")
        _, tgt = service.direction(data.get("source"), data.get("target"))
        layouts = [[split_sentences(line) for line in text.split("\n")] for text in texts]
        sentences = [s for lay in layouts for line in lay for s in line]
        if len(sentences) > lim.max_sentences:
            raise RequestError(
                413, f"the request has {len(sentences)} sentences: over the limit of {lim.max_sentences}"
            )
        service.stats["requests"] += 1
        done = iter(await service.translate(tgt, sentences))
        out = ["\n".join(" ".join(next(done) for _ in line) for line in lay) for lay in layouts]
        return JSONResponse({"translatedText": out[0] if one else out})

    async def languages(request: Request) -> JSONResponse:
        return JSONResponse(service.languages())

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "model": model_name,
                "engine": service.engine,
                "beam": service.beam,
                "pairs": [P.name(p) for p in service.pairs],
                "batch_tokens": service.batch_tokens,
                "workers": service.limits.workers,
                **service.stats,
            }
        )

    async def request_error(request: Request, e: RequestError) -> JSONResponse:
        return JSONResponse({"error": e.message}, status_code=e.status)

    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": e.detail}, status_code=e.status_code)

    async def server_error(request: Request, e: Exception) -> JSONResponse:
        log.error(f"error: {type(e).__name__}: {e}")
        return JSONResponse({"error": f"internal error: {type(e).__name__}"}, status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(service.run())
        yield
        task.cancel()

    return Starlette(
        routes=[
            Route("/translate", translate, methods=["POST"]),
            Route("/languages", languages, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={RequestError: request_error, HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: one the system picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def server(app, grace_s: float = 30.0):
    """A uvicorn server for `app` (without access log); `server.run(sockets=[sock])` serves until SIGTERM/SIGINT
    (or `server.should_exit = True`), answering the requests in flight for up to `grace_s` seconds."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            """As uvicorn's, but a signal that stopped the server gracefully is not raised again afterwards (which
            would kill the process): `mtx serve` returns, says so and exits 0."""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=grace_s)
    return Server(config)


def default_workers(device: str) -> int:
    """Batches decoded at once: two one-thread batches beat one two-thread batch on this 2-core CPU
    (docs/deploy.md); one on a GPU."""
    return 2 if resolve_device(device).type == "cpu" and torch.get_num_threads() >= 2 else 1


def serve(model: Path, engine: str, host: str, port: int, beam: int | None, device: str, limits: Limits) -> None:
    """Serve `model` until SIGTERM or Ctrl-C; the log's first line names the port (useful with port 0)."""
    workers = limits.workers = limits.workers or default_workers(device)
    if workers > 1:  # the CPU threads shared by the batches decoded at once
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))
    translator, cfg = load(model, engine, device, beam=beam, workers=workers)
    service = Service(translator, P.pairs_of(cfg.data), limits, engine)
    try:
        sock = listen(host, port)
    except OSError as e:
        raise MtxError(f"cannot listen on {host}:{port} ({e.strerror})") from None
    bound = sock.getsockname()
    what = f"{engine}, beam {service.beam}, {workers} worker{'s' if workers > 1 else ''}, {model}"
    log.info(f"mtx serve: listening on http://{host}:{bound[1]} ({what})")
    server(make_app(service, str(model))).run(sockets=[sock])
    log.info("mtx serve: stopped")
