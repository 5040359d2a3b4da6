"""`mtx serve`'s app: the routes (routes.py) behind Starlette's middlewares, and `serve()`, which puts a model
behind them on the server of transport.py.

Against clients that misbehave: a body is refused by its Content-Length, or as soon as a chunked one runs past
the limit, before it is read into memory; every request must arrive whole within `transport.REQUEST_TIMEOUT`
seconds (408 after); connections are bounded; a Host header that is not this server's own name is refused
(Starlette's TrustedHostMiddleware: a DNS-rebinding page cannot reach a server on loopback); other origins'
pages may call the API only when `--cors-origins` names them; proxy headers are believed only from the
addresses `--forwarded-allow-ips` names. An error of the server's own is logged as one line with a request id
(the traceback with `--debug`) and answered 500 with `Connection: close`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from pathlib import Path

import torch

from mtx import memory
from mtx.data import pairs as P
from mtx.data.glossary import read_glossary
from mtx.data.shortlist import SHORTLIST
from mtx.decode.ct2 import NO_TERMS, VMAP
from mtx.decode.load import load
from mtx.device import resolve_device
from mtx.errors import MtxError, UsageError
from mtx.serve.access import Access, read_keys
from mtx.serve.downloads import FileStore
from mtx.serve.schema import RequestError
from mtx.serve.service import Limits, Service
from mtx.serve.translation_memory import read_memory_file
from mtx.serve.transport import LOOPBACK_NAMES, listen, server

log = logging.getLogger(__name__)
_ids = itertools.count(1)
__all__ = ["Limits", "make_app", "read_keys", "serve"]


def make_app(service: Service, model_name: str = "", hosts: list[str] | None = None):
    """The Starlette app: LibreTranslate's routes (/, /translate, /translate_file, /detect, /languages,
    /frontend/settings) and mtx's (/score, /health, /metrics); `hosts`: the Host names it answers (None: any)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import ClientDisconnect
    from starlette.routing import Route

    from mtx.serve import routes as R

    lim = service.limits

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(service.run())
        yield
        task.cancel()

    routes = [
        Route("/", R.index, methods=["GET"]),
        Route("/static/{name}", R.static, methods=["GET"]),
        Route("/translate", R.translate, methods=["POST"]),
        Route("/translate_file", R.translate_file, methods=["POST"]),
        Route("/download_file/{key}/{name}", R.download_file, methods=["GET"]),
        Route("/score", R.score, methods=["POST"]),
        Route("/detect", R.detect, methods=["POST"]),
        Route("/frontend/settings", R.settings, methods=["GET"]),
        *([Route("/metrics", R.metrics_page, methods=["GET"])] if lim.metrics else []),
        Route("/languages", R.languages, methods=["GET"]),
        Route("/health", R.health, methods=["GET"]),
    ]
    middleware = [Middleware(Headers)]
    if hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=hosts))
    if lim.cors_origins:
        cors = {"allow_origins": list(lim.cors_origins), "allow_methods": ["GET", "POST"]}
        middleware.append(Middleware(CORSMiddleware, **cors, allow_headers=["Content-Type"]))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            RequestError: _request_error,
            HTTPException: _http_error,
            ClientDisconnect: _gone,
            Exception: _server_error,
        },  # fmt: skip
        lifespan=lifespan,
    )
    app.state.service, app.state.model_name = service, model_name
    app.state.access, app.state.files = Access(lim.keys, lim.req_limit), FileStore()
    return Logged(service.metrics.middleware(app) if lim.metrics else app)


async def _request_error(request, e: RequestError):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)


async def _http_error(request, e):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": e.detail}, status_code=e.status_code)


async def _gone(request, e):
    from starlette.responses import Response

    return Response(status_code=400)  # nobody to answer


async def _server_error(request, e: Exception):
    """One log line with a request id (the traceback with --debug); the connection closed after the answer."""
    from starlette.responses import JSONResponse

    rid = next(_ids)
    debug = request.app.state.service.limits.debug
    log.error(f"error {rid}: {request.method} {request.url.path}: {type(e).__name__}: {e}",
              exc_info=e if debug else None)  # fmt: skip
    return JSONResponse({"error": f"internal error {rid}: {type(e).__name__}"}, status_code=500,
                        headers={"Connection": "close"})  # fmt: skip


class Headers:
    """ASGI middleware: every answer says `nosniff` (a JSON or text answer is never read as a page)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def headed(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, headed if scope["type"] == "http" else send)


class Logged:
    """Outermost ASGI middleware: an error Starlette raises again after its 500 was sent (already logged, one line)
    goes no further, so the server does not log its traceback too."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        started = False

        async def watch(message):
            nonlocal started
            started |= message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if not started or scope["type"] != "http":
                raise


def default_workers(device: str) -> int:
    """Batches decoded at once: two one-thread batches beat one two-thread batch on this 2-core CPU
    (docs/deploy.md); one on a GPU."""
    return 2 if resolve_device(device).type == "cpu" and torch.get_num_threads() >= 2 else 1


def fastest(model: Path | list[Path], device: str, decoding: dict) -> dict:
    """The server's decoding options with its defaults where the command leaves them (None): on the CPU, int8
    and the model's shortlist where it has one, the fastest setting within 0.3 BLEU of fp32 (docs/performance.md);
    elsewhere the model's own."""
    out = dict(decoding)
    if resolve_device(device).type == "cpu":
        models = model if isinstance(model, list) else [model]
        if out.get("precision") is None:
            out["precision"] = "int8"
        if out.get("shortlist") is None:
            out["shortlist"] = all((m / SHORTLIST).is_file() or (m / VMAP).is_file() for m in models)
    return out


def serve(
    model: Path | list[Path], engine: str, host: str, port: int, decoding: dict, device: str, limits: Limits,
    hosts: list[str], forwarded_allow_ips: list[str] | None = None, glossary: Path | None = None,
    memory_file: Path | None = None,
) -> None:  # fmt: skip
    """Serve `model` (several: their ensemble) until SIGTERM or Ctrl-C; the log's first line names the port
    (useful with port 0). `decoding`: the server's decode.* options (None: the model's), which requests may
    change. `hosts`: the names clients may give in their Host header besides loopback's and `host` ("*": any).
    `glossary`: a file of terms whose translations every translation holds (a request may add terms);
    `memory_file`: approved translations (TMX or TSV), which win for an exact source sentence."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: expected 0 to 65535")
    terms = read_glossary(glossary) if glossary is not None else None
    if terms is not None and engine != "mtx":
        raise UsageError(NO_TERMS)
    memory.bound_kernel_cache()
    memory.limit_arenas()
    workers = limits.workers = limits.workers or default_workers(device)
    if workers > 1:  # the CPU threads shared by the batches decoded at once
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))
    translator, cfg = load(model, engine, device, workers=workers, **fastest(model, device, decoding))
    pairs = P.pairs_of(cfg.data)
    approved = read_memory_file(memory_file, pairs) if memory_file is not None else None
    service = Service(translator, pairs, limits, engine, terms, approved)
    try:
        sock = listen(host, port)
    except OSError as e:
        raise MtxError(f"cannot listen on {host}:{port} ({e.strerror})") from None
    bound = sock.getsockname()
    models = model if isinstance(model, list) else [model]
    what = (
        f"{engine}, beam {service.beam}, {workers} worker{'s' if workers > 1 else ''}, {' + '.join(map(str, models))}"
    )
    log.info(f"mtx serve: listening on http://{host}:{bound[1]} ({what})")
    allowed = None if "*" in hosts else [*LOOPBACK_NAMES, "[::1]", host, *hosts]
    app = make_app(service, " + ".join(m.name for m in models), allowed)
    server(app, forwarded_allow_ips=forwarded_allow_ips).run(sockets=[sock])
    log.info("mtx serve: stopped")
