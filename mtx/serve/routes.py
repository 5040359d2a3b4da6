"""The third layer: LibreTranslate's routes (and mtx's own) as module-level handlers over one request schema
(schema.py). A request's way: its fields parsed and checked whole (texts, prefix, options, sizes in characters
with the prefix) and its client admitted; its texts made documents and encoded in the CPU pool; its sentences
decoded by the batcher; the documents rendered from the translations (HTML: with the model's alignments)."""

from __future__ import annotations

import asyncio
import functools
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mtx.data import pairs as P
from mtx.data.glossary import Glossary, find_all
from mtx.decode.ct2 import NO_TERMS
from mtx.documents import formats as D
from mtx.documents.markup import PageError
from mtx.documents.office import OfficeError
from mtx.documents.subtitles import SubtitleError
from mtx.serve.batcher import Busy
from mtx.serve.downloads import StoreFull
from mtx.serve.schema import Fields, RequestError, fields_of
from mtx.serve.service import Service

FILE_TYPES = D.EXTENSIONS  # what /translate_file takes, as which format
STATIC = {"page.js": "text/javascript", "page.css": "text/css"}
UNSURE = 0.5  # the web page marks sentences of a lower confidence (calibrated: about chrF 50; docs/quality.md)
CSP = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"


def service_of(request: Request) -> Service:
    return request.app.state.service


async def _body(request: Request, most: int, limit: int) -> bytes:
    """The body, refused by its Content-Length or as soon as it runs past `most` bytes."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit():
        raise RequestError(400, f"Content-Length {declared!r} is not a number of bytes")
    if int(declared) > most:
        raise RequestError(413, f"the request has {declared} bytes: over the limit of {limit} characters")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > most:
            raise RequestError(413, f"the request has more than {most} bytes: over the limit of {limit} characters")
    return bytes(body)


async def admitted(request: Request) -> Fields:
    """A request's fields, once its client is admitted (key, rate limit)."""
    lim = service_of(request).limits
    f = await fields_of(request.headers, await _body(request, 4 * lim.max_chars + 65536, lim.max_chars))
    refused = request.app.state.access.check(f.api_key, request.client.host if request.client else "?")
    if refused is not None:
        status, message = refused
        raise RequestError(status, message, {"Retry-After": "60"} if status == 429 else None)
    return f


def _sized(s: Service, texts: list[str], extra: list[str] = ()) -> None:
    """Texts per request and characters (prefixes counted) within the limits (413)."""
    lim = s.limits
    if len(texts) > lim.max_texts:
        raise RequestError(413, f"the request has {len(texts)} texts: over the limit of {lim.max_texts}")
    chars = sum(len(t) for t in texts if isinstance(t, str)) + sum(len(t) for t in extra)  # a .docx: its sentences
    if chars > lim.max_chars:
        raise RequestError(413, f"the request has {chars} characters: over the limit of {lim.max_chars}")


def _heads(prefix, n: int) -> list[str]:
    """mtx's `prefix` field (one string, or one for each text of q) as one a text ("" none)."""
    if prefix is None:
        return [""] * n
    heads = [prefix] * n if isinstance(prefix, str) else prefix
    if len(heads) != n:
        raise RequestError(400, "prefix must be a string, or a list of strings with one for each text of q")
    return heads


def _wanted(s: Service, f: Fields, n: int) -> list[list[str]] | None:
    """mtx's `constraints` field: a list of target terms for each of the `n` texts of q (None: not given)."""
    if f.constraints is not None and s.engine != "mtx":
        raise RequestError(400, f"constraints: {NO_TERMS}")
    if f.constraints is not None and len(f.constraints) != n:
        raise RequestError(400, f"constraints: {len(f.constraints)} lists for {n} texts of q (one a text)")
    if f.constraints is not None and not all(t.strip() for ts in f.constraints for t in ts):
        raise RequestError(400, "constraints: a target term is empty")
    return f.constraints


def _terms(s: Service, docs, glossaries: list[Glossary], wanted: list[list[str]] | None, forced):
    """Each sentence's constraints as ids (None: none): the glossaries' terms found in it, and its text's
    `constraints` (a text of one sentence only); a 400 where they cannot fit the model's output, or hold more
    pieces than --max-term-pieces (the search's cost grows as their cube: one request must not hold a worker for
    minutes)."""
    per: list[list[str]] = []
    for i, d in enumerate(docs):
        own = wanted[i] if wanted else []
        if own and len(d.sentences) != 1:
            raise RequestError(400, f"constraints: text {i + 1} has {len(d.sentences)} sentences; constraints are "
                               "for one-sentence texts (a glossary's terms are found in every sentence)")  # fmt: skip
        per += [[t.target for t in find_all(glossaries, x)] + own for x in d.sentences]
    if not any(per):
        return None
    terms = s.tokenizer.encode_groups(per)
    room = s.translator.max_len - 1
    for k, ts in enumerate(terms):
        need = sum(map(len, ts)) + (len(forced[k]) if forced else 0)
        if need > room:
            raise RequestError(400, f"constraints: sentence {k + 1} needs {need} pieces of output; the model's "
                               f"translations hold at most {room}")  # fmt: skip
        if sum(map(len, ts)) > s.limits.max_term_pieces:
            raise RequestError(413, f"constraints: sentence {k + 1} has {sum(map(len, ts))} pieces of terms: over "
                               f"the limit of {s.limits.max_term_pieces}")  # fmt: skip
    return terms


def _prepare(s: Service, texts: list[str], fmt: str, langs: list[str], heads: list[str], f: Fields | None = None,
             wanted: list[list[str]] | None = None):  # fmt: skip
    """(CPU pool) The documents of a request, their sentences' ids, target prefixes' ids and constraints' ids
    (None: none): the glossaries of `f` (its own, compiled here, off the event loop, and the server's), and
    `wanted`, each text's constraints."""
    try:
        docs = [D.make_document(t, fmt, lang) for t, lang in zip(texts, langs, strict=True)]
    except PageError as e:
        raise RequestError(400, f"format html: {e}") from None
    except SubtitleError as e:
        raise RequestError(400, f"not {fmt} subtitles: {e}") from None
    except OfficeError as e:
        raise RequestError(400, str(e)) from None
    sentences = [x for d in docs for x in d.sentences]
    if fmt in D.BINARY and sum(map(len, sentences)) > s.limits.max_chars:
        raise RequestError(413, f"the file has {sum(map(len, sentences))} characters of text: over the limit of "
                           f"{s.limits.max_chars}")  # fmt: skip
    if len(sentences) > s.limits.max_sentences:
        raise RequestError(413, f"the request has {len(sentences)} sentences: over the limit of "
                           f"{s.limits.max_sentences}")  # fmt: skip
    ids = s.tokenizer.encode(sentences)
    forced = None
    if any(heads):
        per = iter(s.tokenizer.encode([h for d, h in zip(docs, heads, strict=True) if d.sentences]))
        forced = [next(per) if k == 0 else [] for d in docs for k in range(len(d.sentences))]
    glossaries = s.glossaries_for(f) if f is not None else []
    return docs, sentences, ids, forced, _terms(s, docs, glossaries, wanted, forced)


def _render(s: Service, tgt: str, docs, sentences, ids, translations, k: int) -> list[str]:
    """(CPU pool) Candidate k of every document; HTML placed by the model's alignments of the best ones."""
    texts = [tr.nbest[min(k, len(tr.nbest) - 1)][0] for tr in translations]
    out, at = [], 0
    aligned = None
    if any(d.needs_alignment for d in docs):
        aligned = D.alignments(s.translator, ids, sentences, translations, s.prefixes[tgt])
    for d in docs:
        n = len(d.sentences)
        out.append(d.render(texts[at : at + n], aligned[at : at + n] if aligned else None))
        at += n
    return out


async def _hung_up(request: Request) -> None:
    """Returns when the client of a request whose body has been read disconnects."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _plain(text: str | bytes, fmt: str) -> str:
    """(CPU pool) What a language is detected on: the text, or the sentences of a binary file's document."""
    if isinstance(text, str):
        return text
    try:
        return " ".join(D.make_document(text, fmt, "en").sentences)
    except OfficeError as e:
        raise RequestError(400, str(e)) from None


async def translated(request: Request, f: Fields, texts: list[str], fmt: str):
    """(translations, alternatives or None, detected languages or None, each text's sentences as (translation,
    confidence) pairs) of `texts`; None when the client left."""
    s = service_of(request)
    heads = _heads(f.prefix, len(texts))
    own = f.glossary.items() if isinstance(f.glossary, dict) else [(f.glossary or "", "")]
    _sized(s, texts, heads + [a + b for a, b in own] + [t for ts in f.constraints or [] for t in ts])
    wanted = _wanted(s, f, len(texts))
    src, tgt = s.direction(f.source, f.target)
    options = s.options(f)
    if fmt == "html" and any(heads):
        raise RequestError(400, "prefix is for format text")
    detected = None
    if src is None:  # "auto": each text's language, as detected (it also picks the segmenter's rules)
        detected = await s.cpu(lambda: [s.detect(_plain(t, fmt), tgt)[0] for t in texts])
    langs = [d["language"] for d in detected] if detected else [src] * len(texts)
    docs, sentences, ids, forced, terms = await s.cpu(_prepare, s, texts, fmt, langs, heads, f, wanted)
    s.stats["requests"] += 1
    srcs = [lang for d, lang in zip(docs, langs, strict=True) for _ in d.sentences]
    work = asyncio.ensure_future(s.translate(srcs, tgt, sentences, ids, forced, options, terms))
    gone = asyncio.ensure_future(_hung_up(request))
    await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if not work.done():  # the client went away: its sentences leave the queue, or the search at its next step
        work.cancel()
        return None
    try:
        done = work.result()
    except Busy as e:
        raise RequestError(503, str(e), {"Retry-After": "1"}) from None
    best = await s.cpu(_render, s, tgt, docs, sentences, ids, done, 0)
    more = options.nbest - 1
    alternatives = None
    if more and fmt == "text":
        cands = [await s.cpu(_render, s, tgt, docs, sentences, ids, done, k) for k in range(1, more + 1)]
        alternatives = [[c[i] for c in cands] for i in range(len(texts))]
    elif more:
        alternatives = [[] for _ in texts]
    per, at = [], 0
    for d in docs:
        per.append([(tr.text, tr.confidence) for tr in done[at : at + len(d.sentences)]])
        at += len(d.sentences)
    return best, alternatives, detected, per


async def translate(request: Request) -> Response:
    f = await admitted(request)
    texts, one = f.texts()
    got = await translated(request, f, texts, f.format or "text")
    if got is None:
        return Response(status_code=499)
    best, alternatives, detected, per = got
    # mtx's own: each text's confidence, its least confident sentence's (confidence.py; 1 for a text without one)
    answer = {"translatedText": best, "confidence": [round(min((c for _, c in p), default=1.0), 4) for p in per]}
    if f.sentences:
        answer["sentences"] = [[{"text": t, "confidence": round(c, 4)} for t, c in p] for p in per]
    if alternatives is not None:
        answer["alternatives"] = alternatives
    if detected is not None:
        answer["detectedLanguage"] = detected
    return JSONResponse({k: v[0] if one else v for k, v in answer.items()})


async def translate_file(request: Request) -> Response:
    """LibreTranslate's file flow: a file of FILE_TYPES (multipart field `file`) is translated within the same
    limits; the answer's translatedFileUrl downloads it (downloads.py)."""
    f = await admitted(request)
    upload = f.file
    if not isinstance(upload, UploadFile):
        raise RequestError(400, f"missing file: post a file ({', '.join(FILE_TYPES)}) as the multipart field file")
    name = Path(upload.filename or "file.txt").name
    fmt = FILE_TYPES.get(Path(name).suffix.lower())
    if fmt is None:
        raise RequestError(400, f"{name}: the files translated are {', '.join(FILE_TYPES)}")
    content = await upload.read()
    if fmt not in D.BINARY:
        try:
            content = content.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(400, f"{name} is not UTF-8 text") from None
    got = await translated(request, f, [content], fmt)
    if got is None:
        return Response(status_code=499)
    client = request.client.host if request.client else "?"
    try:
        key = request.app.state.files.put(client, name, got[0][0])
    except StoreFull as e:
        raise RequestError(503, str(e), {"Retry-After": "60"}) from None
    return JSONResponse({"translatedFileUrl": f"{request.base_url}download_file/{key}/{quote(name)}"})


async def download_file(request: Request) -> Response:
    """A translated file, as an attachment that a browser never renders on this origin."""
    got = request.app.state.files.get(request.path_params["key"])
    if got is None:
        raise RequestError(404, "no such file (translated files are kept for 10 minutes)")
    name, body = got
    plain = FILE_TYPES.get(Path(name).suffix.lower()) == "text"
    media = "text/plain; charset=utf-8" if plain else "application/octet-stream"
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        "Content-Security-Policy": "sandbox",
    }
    return Response(body.encode("utf-8") if isinstance(body, str) else body, media_type=media, headers=headers)


async def score(request: Request) -> Response:
    """mtx's own route: the model's scores of given translations (`mtx score`)."""
    s = service_of(request)
    f = await admitted(request)
    texts, one = f.texts()
    refs, _ = f.texts("translation")
    if len(refs) != len(texts):
        raise RequestError(400, f"{len(texts)} texts in q and {len(refs)} in translation: give one for each")
    _sized(s, texts, refs)
    if len(texts) > s.limits.max_sentences:
        raise RequestError(413, f"the request has {len(texts)} pairs: over the limit of {s.limits.max_sentences}")
    if getattr(s.translator, "model", None) is None:
        raise RequestError(400, f"/score needs mtx's own engine (this server runs {s.engine})")
    _, tgt = s.direction(f.source, f.target)
    loop = asyncio.get_running_loop()
    out = [vars(x) for x in await loop.run_in_executor(s.batcher.pool, s.score, tgt, texts, refs)]
    return JSONResponse({"scores": out[0] if one else out})


async def detect(request: Request) -> Response:
    s = service_of(request)
    f = await admitted(request)
    texts, one = f.texts()
    _sized(s, texts)
    out = await s.cpu(lambda: [s.detect(t) for t in texts])
    return JSONResponse(out[0] if one else out)


async def metrics_page(request: Request) -> Response:
    body, ctype = service_of(request).metrics.page()
    return Response(body, media_type=ctype)


async def settings(request: Request) -> JSONResponse:
    """What LibreTranslate's web page asks first: whether keys are needed, the limits, the file formats."""
    lim = service_of(request).limits
    return JSONResponse({"apiKeys": bool(lim.keys), "keyRequired": bool(lim.keys), "charLimit": lim.max_chars,
                         "frontendTimeout": 500, "confidenceBelow": UNSURE, "filesTranslation": True,
                         "supportedFilesFormat": list(FILE_TYPES),
                         "language": {"source": {"code": "auto", "name": "Auto Detect"}}})  # fmt: skip


@functools.cache
def _static(name: str) -> bytes:
    return (resources.files("mtx.serve") / "static" / name).read_bytes()


async def index(request: Request) -> Response:
    """The web page (static/: no build step, nothing fetched from elsewhere, no inline script)."""
    return Response(_static("index.html"), media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": CSP})  # fmt: skip


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:
        raise RequestError(404, "no such file")
    return Response(_static(name), media_type=f"{STATIC[name]}; charset=utf-8")


async def languages(request: Request) -> JSONResponse:
    return JSONResponse(service_of(request).languages())


async def health(request: Request) -> JSONResponse:
    s = service_of(request)
    d = s.translator.cfg
    return JSONResponse({"status": "ok", "model": request.app.state.model_name, "engine": s.engine, "beam": s.beam,
                         "precision": d.precision, "shortlist": d.shortlist,
                         "pairs": [P.name(p) for p in s.pairs], "batch_tokens": s.batch_tokens,
                         "workers": s.limits.workers, **s.stats,
                         **{f"memory_{k}": v for k, v in s.memory.counts.items()}})  # fmt: skip
