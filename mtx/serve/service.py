"""The model behind `mtx serve` (LibreTranslate's HTTP API, app.py), with requests batched dynamically.

    POST /translate  {"q": "Ein Hund." | ["...", ...], "source": "de" | "auto", "target": "en", "format": "text"}
                     -> {"translatedText": "A dog." | ["...", ...]}
    GET  /languages  -> [{"code": "de", "name": "German", "targets": ["en"]}, ...]
    GET  /health     -> {"status": "ok", "engine": ..., "pairs": [...], "requests": ..., "batches": ...}

Each text is cut into lines and each line into sentences (the models are trained on single sentences), and put
back together after translation. Requests that arrive together are decoded together: the batcher takes the first
waiting request, collects others for `wait_ms` or until `batch_tokens` source pieces, decodes them in a worker
thread (the event loop goes on accepting requests) and answers each request as soon as the search of its last
sentence has ended (mtx's engine; CTranslate2's at the end of its batch), so that clients send their next
requests while the batch decodes on, and the next batch is ready when this one ends. With `workers` > 1,
several batches decode at once, each on its share of the CPU threads. Errors are JSON, {"error": "..."}, with
a 4xx status; the server goes on serving. SIGTERM stops accepting connections and answers the requests in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import re
from dataclasses import dataclass, field

from mtx import memory
from mtx.config import DecodeConfig
from mtx.data import pairs as P
from mtx.decode.scoring import Score, score_lines
from mtx.decode.translator import BatchTranslator, Translation
from mtx.errors import UsageError, check_positive
from mtx.serve.detect import Detector
from mtx.serve.metrics import Metrics
from mtx.specs import parse_sample

log = logging.getLogger(__name__)

TRIM_EVERY_S = 1.0  # seconds between two returns of freed memory to the system
MAX_ALTERNATIVES = 8  # LibreTranslate's `alternatives` at most (the beam grows to alternatives + 1)


@dataclass
class Limits:
    max_chars: int = 5000  # characters per request, over every text of q
    max_sentences: int = 128  # sentences per request, after splitting
    wait_ms: float = 5.0  # how long the batcher collects after the first waiting request
    batch_tokens: int | None = None  # source pieces a batch collects at most (None: the translator's budget / beam)
    workers: int | None = 1  # batches decoded at once, each in its own thread (None: mtx serve's default)
    max_queue: int = 1024  # sentences waiting for a batch at most; a request beyond is answered 503 at once
    req_limit: int = 0  # requests a minute per API key (else per client address); 0: no limit
    keys: frozenset[str] = frozenset()  # the API keys a request must carry (api_key); empty: none needed
    metrics: bool = True  # GET /metrics, and every request counted and timed for it

    def __post_init__(self) -> None:
        """Each limit checked, named by the `mtx serve` option that sets it."""
        check_positive(max_chars=self.max_chars, max_sentences=self.max_sentences)
        if not math.isfinite(self.wait_ms):
            raise UsageError(f"--batch-wait-ms must be a finite number, got {self.wait_ms}")
        check_positive(zero_ok=True, batch_wait_ms=self.wait_ms)
        check_positive(batch_tokens=self.batch_tokens, workers=self.workers, max_queue=self.max_queue)
        check_positive(zero_ok=True, req_limit=self.req_limit)


class RequestError(Exception):
    """A bad request: answered with `status` and {"error": message} (and `headers`)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


_BREAK = re.compile(r"(?<=[.!?…])\s+")


def split_sentences(line: str) -> list[str]:
    """A line's sentences: it is cut after . ! ? or … and spaces where the next word starts with a capital letter
    or a digit (so "a dog, e.g. a big one" stays whole; "Mr. Smith" does not)."""
    out: list[str] = []
    for part in _BREAK.split(line.strip()):
        first = next((c for c in part if c.isalnum()), "")
        if out and not (first.isupper() or first.isdigit()):
            out[-1] += " " + part
        elif part:
            out.append(part)
    return out


@dataclass
class _Job:
    tgt: str
    sentences: list[str]
    tokens: int
    future: asyncio.Future
    heads: list[str] | None = None  # each sentence's target prefix ("" none)
    decode: DecodeConfig | None = None  # other decoding settings than the server's (sampling)
    texts: list[Translation | None] = field(default_factory=list)  # translations as they come
    left: int = 0  # sentences not translated yet


class Service:
    """The model behind the API: which directions it serves, and the batcher that decodes for every request."""

    def __init__(self, translator: BatchTranslator, pairs: list[P.Pair], limits: Limits, engine: str = "mtx"):
        self.translator, self.pairs, self.limits, self.engine = translator, pairs, limits, engine
        self.tokenizer = translator.tokenizer
        self.beam = translator.cfg.beam
        # what each target's sources start with: its tag, on a model of several targets
        self.prefixes = {tgt: P.prefix_ids(translator.tokenizer, pairs, tgt) for tgt in P.targets(pairs)}
        self.batch_tokens = limits.batch_tokens or max(translator.batch_tokens // max(self.beam, 1), 1)
        self.stats = {"requests": 0, "sentences": 0, "batches": 0, "refused_busy": 0, "dropped_sentences": 0}
        self._trimmed = 0.0
        self._pending: list[_Job] = []
        self._arrived: asyncio.Event | None = None
        self._collecting: asyncio.Lock | None = None
        self._zero_shot_warned: set[str] = set()
        self._detector: Detector | None = None  # loaded on first use
        self.metrics = Metrics(lambda: self.queued)

    @property
    def queued(self) -> int:
        """Sentences of the requests waiting for a batch."""
        return sum(len(j.sentences) for j in self._pending)

    def direction(self, source, target) -> P.Pair:
        """The (source, target) a request asks for; a RequestError naming the model's pairs if it has none such."""
        have = ", ".join(P.name(p) for p in self.pairs)
        if not isinstance(target, str) or not (source is None or isinstance(source, str)):
            raise RequestError(400, f"source and target must be language codes: the model's pairs are {have}")
        auto = source is None or source == "auto"
        try:
            asked = f"{source or 'auto'} into {target} is not supported"
            src, tgt = P.direction(self.pairs, None if auto else source, target, asked, self._warn)
        except UsageError as e:
            raise RequestError(400, str(e)) from None
        return (None if auto else src), tgt

    def detect(self, text: str, target: str | None = None) -> list[dict]:
        """`text`'s language among the model's sources (those that translate into `target`), best first, the
        confidences (percent) renormalised over them (LibreTranslate's /detect)."""
        if self._detector is None:
            self._detector = Detector([x["code"] for x in self.languages()])
        ranked = self._detector.detect(text)
        if target is not None:
            ok = {x["code"] for x in self.languages() if target in x["targets"]}
            ranked = [r for r in ranked if r["language"] in ok] or ranked
        total = sum(r["confidence"] for r in ranked) or 1.0
        return [{"language": r["language"], "confidence": round(100 * r["confidence"] / total, 1)} for r in ranked]

    def _warn(self, text: str) -> None:
        """Each zero-shot direction's warning, once."""
        if text not in self._zero_shot_warned:
            self._zero_shot_warned.add(text)
            log.warning(text)

    def languages(self) -> list[dict]:
        out = []
        for lang in P.languages(self.pairs):
            if P.tagged(self.pairs):  # any of its targets, the untrained directions zero-shot
                tgts = [t for t in P.targets(self.pairs) if t != lang]
            else:  # one target, reached from the trained sources
                tgts = [t for s, t in self.pairs if s == lang]
            if tgts:  # a language only translated into is no source
                out.append({"code": lang, "name": P.NAMES.get(lang, lang), "targets": tgts})
        return out

    def decoding(self, data: dict) -> DecodeConfig | None:
        """A request's own decoding settings: LibreTranslate's `alternatives` (N more candidates), mtx's `sample`
        ("topk=K" or "topp=P"), `temperature`, `seed`; None when it names none."""
        asked = {k: data[k] for k in ("sample", "temperature", "seed") if data.get(k) is not None}
        more = data.get("alternatives") or 0
        if isinstance(more, bool) or not isinstance(more, int) or not 0 <= more <= MAX_ALTERNATIVES:
            raise RequestError(400, f"alternatives must be a whole number from 0 to {MAX_ALTERNATIVES}")
        if not asked:
            if not more:
                return None
            c = self.translator.cfg
            return dataclasses.replace(c, nbest=more + 1, beam=max(c.beam, more + 1))
        sample, temp, seed = asked.get("sample", ""), asked.get("temperature", 1.0), asked.get("seed", 0)
        try:
            ok = isinstance(sample, str) and (not sample or parse_sample(sample))
        except ValueError:
            ok = False
        if not ok:
            raise RequestError(400, 'sample must be "topk=K" or "topp=P", e.g. "topk=10"')
        if isinstance(temp, bool) or not isinstance(temp, int | float) or not (0 < temp < math.inf):
            raise RequestError(400, "temperature must be a number > 0")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise RequestError(400, "seed must be a whole number >= 0")
        return dataclasses.replace(self.translator.cfg, sample=sample, temperature=float(temp), seed=seed,
                                   nbest=more + 1)  # fmt: skip

    async def score(self, tgt: str, sources: list[str], translations: list[str]) -> list[Score]:
        """The model's scores of the translations (mtx's engine only), computed in a worker thread."""
        model = getattr(self.translator, "model", None)
        if model is None:
            raise RequestError(400, f"/score needs mtx's own engine (this server runs {self.engine})")
        pairs = list(zip(sources, translations, strict=True))
        options = {"prefix": self.prefixes[tgt], "alpha": self.translator.cfg.alpha}
        options["batch_tokens"] = self.translator.batch_tokens
        return await asyncio.to_thread(lambda: list(score_lines(model, self.tokenizer, pairs, **options)))

    async def translate(self, tgt: str, sentences: list[str], heads: list[str] | None = None,
                        decode: DecodeConfig | None = None) -> list[Translation]:  # fmt: skip
        """Queue sentences for the batcher; their translations, in order. `heads`: each one's target prefix;
        `decode`: settings of this request's own (self.decoding)."""
        if not sentences:
            return []
        tokens = sum(len(x) + 1 for x in self.tokenizer.encode(sentences))
        if self.queued + len(sentences) > self.limits.max_queue:
            self.stats["refused_busy"] += 1
            raise RequestError(
                503, f"busy: {self.queued} sentences are waiting; retry in a second", {"Retry-After": "1"}
            )
        job = _Job(tgt, sentences, tokens, asyncio.get_running_loop().create_future(), heads, decode)
        self._pending.append(job)
        assert self._arrived is not None, "the batcher is not running"
        self._arrived.set()
        try:
            return await job.future
        except asyncio.CancelledError:  # the client went away: what has not started is not decoded
            job.future.cancel()
            if job in self._pending:
                self._pending.remove(job)
                self.stats["dropped_sentences"] += len(sentences)
            raise

    async def run(self) -> None:
        """The batchers, `limits.workers` of them: each in turn collects a batch (the first waiting request, then
        others for wait_ms or up to the token budget) and decodes it, while the next collects."""
        self._arrived, self._collecting = asyncio.Event(), asyncio.Lock()
        await asyncio.gather(*(self._worker() for _ in range(self.limits.workers)))

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            async with self._collecting:
                while not self._pending:
                    self._arrived.clear()
                    await self._arrived.wait()
                deadline = loop.time() + self.limits.wait_ms / 1000
                while sum(j.tokens for j in self._pending) < self.batch_tokens:
                    self._arrived.clear()
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        await asyncio.wait_for(self._arrived.wait(), left)
                    except TimeoutError:
                        break
                jobs, tokens = [], 0
                while self._pending and (not jobs or tokens + self._pending[0].tokens <= self.batch_tokens):
                    jobs.append(self._pending.pop(0))
                    tokens += jobs[-1].tokens
            jobs = [j for j in jobs if not j.future.done()]  # a client that went away is not decoded for
            if jobs:
                await self._decode(jobs)
                if loop.time() - self._trimmed > TRIM_EVERY_S:  # freed blocks back to the system, as training
                    memory.trim()  # does (not after every batch: the pages given back fault in again)
                    self._trimmed = loop.time()

    async def _decode(self, jobs: list[_Job]) -> None:
        """Decode a batch in a worker thread; each request is answered as soon as its last sentence is translated
        (its client can send the next one while the batch goes on), the rest when the batch ends."""
        self.stats["batches"] += 1
        self.metrics.batch.observe(sum(len(j.sentences) for j in jobs))
        loop = asyncio.get_running_loop()
        by_tgt: dict[tuple, list[_Job]] = {}  # decoded together: the same target and settings
        for job in jobs:
            d = job.decode
            by_tgt.setdefault((job.tgt, d and (d.sample, d.temperature, d.seed, d.nbest, d.beam)), []).append(job)
        for (tgt, _), group in by_tgt.items():
            owner = [(job, k) for job in group for k in range(len(job.sentences))]
            for job in group:
                job.texts, job.left = [None] * len(job.sentences), len(job.sentences)

            def deliver(i: int, tr: Translation, owner=owner) -> None:  # on the event loop
                job, k = owner[i]
                if job.texts[k] is not None:
                    return
                job.texts[k] = tr
                self.stats["sentences"] += 1  # counted as answered: /health agrees with the answers given
                self.metrics.sentences.inc()
                job.left -= 1
                if job.left == 0 and not job.future.done():
                    job.future.set_result(job.texts)

            def heard(i: int, tr, deliver=deliver) -> None:  # in the decoding thread
                loop.call_soon_threadsafe(deliver, i, tr)

            lines = [s for job in group for s in job.sentences]
            options = {"prefix": self.prefixes[tgt], "on_sentence": heard, "decode": group[0].decode}
            if any(job.heads for job in group):
                options["target_prefix"] = [h for job in group for h in job.heads or [""] * len(job.sentences)]
            try:
                out = await asyncio.to_thread(self.translator.translate, lines, **options)
            except Exception as e:  # answered as a 500 to each request of the batch not answered yet
                for job in group:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            for i, tr in enumerate(out):  # those an engine did not report one by one
                deliver(i, tr)
