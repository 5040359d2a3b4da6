"""`mtx serve`'s HTTP side: LibreTranslate's routes (and mtx's own) over a `Service` (service.py), errors as JSON,
and `serve()`, which puts a model behind them on the server of transport.py.

Against clients that misbehave: a body is refused by its Content-Length, or as soon as a chunked one runs past
the limit, before it is read into memory; every request must arrive whole within `transport.REQUEST_TIMEOUT`
seconds of its first byte (or of the connection) or its connection is closed with 408; connections are bounded;
the work of a client that hangs up is dropped where it has not started; a Host header that is not this server's
own name is refused (a DNS-rebinding page cannot reach a server on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import torch

from mtx import memory
from mtx.data import pairs as P
from mtx.decode.load import load
from mtx.device import resolve_device
from mtx.errors import MtxError, UsageError
from mtx.serve.access import RateLimit
from mtx.serve.downloads import FileStore
from mtx.serve.markup import HtmlPage
from mtx.serve.service import Limits, RequestError, Service, split_sentences
from mtx.serve.transport import LOOPBACK_NAMES, HostCheck, listen, server

log = logging.getLogger(__name__)

FILE_TYPES = {".txt": "text", ".html": "html", ".htm": "html"}  # what /translate_file takes, as which format
BODY_TYPES = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")


def _texts(data, field: str = "q") -> tuple[list[str], bool]:
    """The texts of a request's q (or `field`), and whether it was one string."""
    if not isinstance(data, dict):
        raise RequestError(400, "the body must be a JSON object")
    q = data.get("q")
    if q is None:
        raise RequestError(400, f"missing {field}: the text to translate (a string or a list of strings)")
    if isinstance(q, str):
        return [q], True
    if isinstance(q, list) and all(isinstance(x, str) for x in q):
        return q, False
    raise RequestError(400, f"{field} must be a string or a list of strings")


def _heads(prefix, layouts: list[list[list[str]]]) -> list[str] | None:
    """mtx's `prefix` field (one string, or one for each text of q): the target prefix of each text's first
    sentence, as the sentences are queued; None without one."""
    if prefix is None:
        return None
    heads = [prefix] * len(layouts) if isinstance(prefix, str) else prefix
    if not (isinstance(heads, list) and len(heads) == len(layouts) and all(isinstance(h, str) for h in heads)):
        raise RequestError(400, "prefix must be a string, or a list of strings with one for each text of q")
    out = []
    for head, lay in zip(heads, layouts, strict=True):
        n = sum(len(line) for line in lay)
        out += [head] + [""] * (n - 1) if n else []
    return out


def make_app(service: Service, model_name: str = ""):
    """The Starlette app: LibreTranslate's routes (/, /translate, /translate_file, /detect, /languages,
    /frontend/settings) and mtx's (/score, /health, /metrics)."""
    from starlette.applications import Starlette
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    lim = service.limits
    limiter = RateLimit(lim.req_limit)
    files = FileStore()

    def admit(request: Request, data) -> None:
        """LibreTranslate's access rules: a valid `api_key` where keys are required (403), at most
        `--req-limit` requests a minute per key, else per client address (429)."""
        key = data.get("api_key") if isinstance(data, dict) else None
        key = key if isinstance(key, str) else ""
        if lim.keys and key not in lim.keys:
            raise RequestError(403, "Invalid API key" if key else "Please provide an API key (api_key)")
        client = f"key {key}" if key else f"address {request.client.host if request.client else '?'}"
        if not limiter.allow(client):
            raise RequestError(429, f"Too many requests: at most {lim.req_limit} a minute", {"Retry-After": "60"})

    most = 4 * lim.max_chars + 65536  # bytes of a body at most

    async def body_of(request: Request) -> bytes:
        """The body, refused by its Content-Length or as soon as it runs past the limit."""
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit():
            raise RequestError(400, f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > most:
            raise RequestError(413, f"the request has {declared} bytes: over the limit of {lim.max_chars} characters")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > most:
                raise RequestError(413, f"the request has more than {most} bytes: over the limit of {lim.max_chars} "
                                   "characters")  # fmt: skip
        return bytes(body)

    async def fields_of(request: Request) -> dict:
        """A request's fields, from every body LibreTranslate accepts: JSON, an HTML form (urlencoded) or
        multipart/form-data (a field given twice, e.g. q, is a list; numbers of a form are read as numbers)."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in BODY_TYPES:
            raise RequestError(415, f"send JSON, a form or multipart/form-data (got {ctype or 'none'!r})")
        body = await body_of(request)
        if ctype == "application/json":
            try:
                return json.loads(body)
            except (ValueError, UnicodeDecodeError) as e:
                raise RequestError(400, f"malformed JSON: {e}") from None
            except RecursionError:
                raise RequestError(400, "malformed JSON: nested too deeply") from None

        async def whole():
            yield body
            yield b""

        parser = FormParser if ctype == "application/x-www-form-urlencoded" else MultiPartParser
        try:
            form = await parser(request.headers, whole()).parse()
        except (MultiPartException, UnicodeDecodeError, ValueError) as e:
            raise RequestError(400, f"malformed form: {e}") from None
        data = {}
        for key in form:
            values = [v for v in form.getlist(key) if isinstance(v, str)]
            data[key] = values[0] if len(values) == 1 else values
            if not values and isinstance(form[key], UploadFile):  # a file (/translate_file)
                data[key] = form[key]
        for key, kind in (("alternatives", int), ("seed", int), ("temperature", float)):
            if isinstance(data.get(key), str) and data[key].strip():
                try:
                    data[key] = kind(data[key])
                except ValueError:
                    raise RequestError(400, f"{key} must be a number, got {data[key]!r}") from None
        return data

    async def admitted(request: Request) -> tuple[dict, list[str], bool]:
        """A request's fields once it is admitted (key, rate limit), its texts (q) and whether q was one string."""
        data = await fields_of(request)
        admit(request, data)
        return (data, *_texts(data))

    async def translated(request: Request, data: dict, texts: list[str], fmt) -> tuple[dict, str | None] | None:
        """`texts` translated as a request asks ({"translatedText": [...], "alternatives": [...]}) and their
        source language (None: "auto"); None when the client went away."""
        if fmt not in ("text", "html"):
            raise RequestError(400, f"format {fmt!r} is not supported: text or html")
        chars = sum(len(t) for t in texts)
        if chars > lim.max_chars:
            raise RequestError(413, f"the request has {chars} characters: over the limit of {lim.max_chars}")
        src, tgt = service.direction(data.get("source"), data.get("target"))
        decode = service.decoding(data)
        # pages parsed (and rendered, below) off the event loop: a page of many inline tags takes a while to place
        pages = await asyncio.to_thread(lambda: [HtmlPage(t) for t in texts]) if fmt == "html" else None
        plain = [x for page in pages for x in page.texts] if pages is not None else texts
        layouts = [[split_sentences(line) for line in text.split("\n")] for text in plain]
        sentences = [s for lay in layouts for line in lay for s in line]
        if len(sentences) > lim.max_sentences:
            raise RequestError(
                413, f"the request has {len(sentences)} sentences: over the limit of {lim.max_sentences}"
            )
        if pages is not None and data.get("prefix") is not None:
            raise RequestError(400, "prefix is for format text")
        heads = _heads(data.get("prefix"), layouts)
        service.stats["requests"] += 1
        work = asyncio.ensure_future(service.translate(tgt, sentences, heads, decode))
        gone = asyncio.ensure_future(_hung_up(request))
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not work.done():  # the client went away: its sentences that have not started are dropped
            work.cancel()
            return None
        done = iter(work.result())
        trs = [[[next(done) for _ in line] for line in lay] for lay in layouts]

        def text(tr_lay, k: int) -> str:  # candidate k of every sentence, in place (0: the translation)
            return "\n".join(" ".join(tr.nbest[min(k, len(tr.nbest) - 1)][0] for tr in line) for line in tr_lay)

        more = decode.nbest - 1 if decode is not None else 0
        answer = {"translatedText": [text(t, 0) for t in trs]}
        if pages is not None:  # the pages, their runs translated (no alternatives)
            out = iter(answer["translatedText"])
            done = [[next(out) for _ in page.texts] for page in pages]
            answer["translatedText"] = await asyncio.to_thread(
                lambda: [page.render(x) for page, x in zip(pages, done, strict=True)]
            )
            if more:
                answer["alternatives"] = [[] for _ in pages]
        elif more:
            answer["alternatives"] = [[text(t, k) for k in range(1, more + 1)] for t in trs]
        return answer, src

    async def translate(request: Request) -> Response:
        data, texts, one = await admitted(request)
        got = await translated(request, data, texts, data.get("format") or "text")
        if got is None:
            return Response(status_code=499)
        answer, src = got
        if src is None:  # source "auto": each text's language, as detected
            answer["detectedLanguage"] = [service.detect(t, data.get("target"))[0] for t in texts]
        return JSONResponse({k: v[0] if one else v for k, v in answer.items()})

    async def translate_file(request: Request) -> Response:
        """LibreTranslate's file flow: a .txt or .html file (multipart field `file`) is translated within the same
        limits; the answer's translatedFileUrl downloads it (kept for 10 minutes, the newest 64: downloads.py)."""
        data = await fields_of(request)
        admit(request, data)
        upload = data.get("file")
        if not isinstance(upload, UploadFile):
            raise RequestError(400, "missing file: post a .txt or .html file as the multipart field file")
        name = Path(upload.filename or "file.txt").name
        fmt = FILE_TYPES.get(Path(name).suffix.lower())
        if fmt is None:
            raise RequestError(400, f"{name}: only .txt and .html files are translated")
        try:
            content = (await upload.read()).decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(400, f"{name} is not UTF-8 text") from None
        got = await translated(request, data, [content], fmt)
        if got is None:
            return Response(status_code=499)
        key = files.put(name, got[0]["translatedText"][0])
        return JSONResponse({"translatedFileUrl": f"{request.base_url}download_file/{key}/{quote(name)}"})

    async def download_file(request: Request) -> Response:
        got = files.get(request.path_params["key"])
        if got is None:
            raise RequestError(404, "no such file (translated files are kept for 10 minutes)")
        name, body = got
        media = "text/html" if FILE_TYPES[Path(name).suffix.lower()] == "html" else "text/plain"
        return Response(body, media_type=f"{media}; charset=utf-8",
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"})  # fmt: skip

    async def score(request: Request) -> Response:
        """mtx's own route: the model's scores of given translations (`mtx score`)."""
        data, texts, one = await admitted(request)
        refs, _ = _texts({"q": data.get("translation")}, "translation")
        if len(refs) != len(texts):
            raise RequestError(400, f"{len(texts)} texts in q and {len(refs)} in translation: give one for each")
        chars = sum(len(t) for t in texts + refs)
        if chars > lim.max_chars or len(texts) > lim.max_sentences:
            raise RequestError(413, f"the request has {len(texts)} pairs, {chars} characters: over the limits of "
                               f"{lim.max_sentences} and {lim.max_chars}")  # fmt: skip
        _, tgt = service.direction(data.get("source"), data.get("target"))
        out = [vars(x) for x in await service.score(tgt, texts, refs)]
        return JSONResponse({"scores": out[0] if one else out})

    async def detect(request: Request) -> Response:
        _, texts, one = await admitted(request)
        if sum(len(t) for t in texts) > lim.max_chars:
            raise RequestError(413, f"over the limit of {lim.max_chars} characters")
        out = [service.detect(t) for t in texts]
        return JSONResponse(out[0] if one else out)

    async def metrics_page(request: Request) -> Response:
        body, ctype = service.metrics.page()
        return Response(body, media_type=ctype)

    async def settings(request: Request) -> JSONResponse:
        """What LibreTranslate's web page asks first: whether keys are needed, the limits, the file formats."""
        return JSONResponse({"apiKeys": bool(lim.keys), "keyRequired": bool(lim.keys), "charLimit": lim.max_chars,
                             "frontendTimeout": 500, "filesTranslation": True, "supportedFilesFormat": list(FILE_TYPES),
                             "language": {"source": {"code": "auto", "name": "Auto Detect"}}})  # fmt: skip

    page = (resources.files("mtx.serve") / "static" / "index.html").read_bytes()
    csp = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'"

    async def index(request: Request) -> Response:
        """The web page (static/index.html: one file, no build step, nothing fetched from elsewhere)."""
        return Response(page, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": csp})

    async def languages(request: Request) -> JSONResponse:
        return JSONResponse(service.languages())

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "model": model_name,  # its name, not where it is
                "engine": service.engine,
                "beam": service.beam,
                "pairs": [P.name(p) for p in service.pairs],
                "batch_tokens": service.batch_tokens,
                "workers": service.limits.workers,
                **service.stats,
            }
        )

    async def request_error(request: Request, e: RequestError) -> JSONResponse:
        return JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)

    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": e.detail}, status_code=e.status_code)

    async def gone(request: Request, e: ClientDisconnect) -> Response:
        return Response(status_code=400)  # nobody to answer

    async def server_error(request: Request, e: Exception) -> JSONResponse:
        log.error(f"error: {type(e).__name__}: {e}")
        return JSONResponse({"error": f"internal error: {type(e).__name__}"}, status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(service.run())
        yield
        task.cancel()

    app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/translate", translate, methods=["POST"]),
            Route("/translate_file", translate_file, methods=["POST"]),
            Route("/download_file/{key}/{name}", download_file, methods=["GET"]),
            Route("/score", score, methods=["POST"]),
            Route("/detect", detect, methods=["POST"]),
            Route("/frontend/settings", settings, methods=["GET"]),
            *([Route("/metrics", metrics_page, methods=["GET"])] if lim.metrics else []),
            Route("/languages", languages, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={
            RequestError: request_error,
            HTTPException: http_error,
            ClientDisconnect: gone,
            Exception: server_error,
        },
        lifespan=lifespan,
    )
    return service.metrics.middleware(app) if lim.metrics else app


async def _hung_up(request) -> None:
    """Returns when the client of a request whose body has been read disconnects."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def default_workers(device: str) -> int:
    """Batches decoded at once: two one-thread batches beat one two-thread batch on this 2-core CPU
    (docs/deploy.md); one on a GPU."""
    return 2 if resolve_device(device).type == "cpu" and torch.get_num_threads() >= 2 else 1


def serve(
    model: Path | list[Path], engine: str, host: str, port: int, beam: int | None, device: str, limits: Limits,
    hosts: list[str],
) -> None:  # fmt: skip
    """Serve `model` (several: their ensemble) until SIGTERM or Ctrl-C; the log's first line names the port
    (useful with port 0). `hosts`: the names clients may give in their Host header besides loopback's and
    `host`."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: expected 0 to 65535")
    memory.bound_kernel_cache()
    memory.limit_arenas()
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
    models = model if isinstance(model, list) else [model]
    what = (
        f"{engine}, beam {service.beam}, {workers} worker{'s' if workers > 1 else ''}, {' + '.join(map(str, models))}"
    )
    log.info(f"mtx serve: listening on http://{host}:{bound[1]} ({what})")
    allowed = [*LOOPBACK_NAMES, host, *hosts]
    server(HostCheck(make_app(service, " + ".join(m.name for m in models)), allowed)).run(sockets=[sock])
    log.info("mtx serve: stopped")
