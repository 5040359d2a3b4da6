"""The model behind `mtx serve` (LibreTranslate's HTTP API: routes.py): the directions it serves, language
detection, each request's decoding options, and the two pools the requests' work runs in: `cpu` (parsing,
segmenting, encoding, detecting, rendering, aligning: bounded, apart from decoding) and the batcher's
(decoding: batcher.py). Errors are JSON, {"error": "..."}, with a 4xx status; the server goes on serving."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mtx.config import DecodeConfig
from mtx.data import pairs as P
from mtx.data.glossary import Glossary, parse_glossary
from mtx.decode.ct2 import NO_TERMS
from mtx.decode.scoring import Score, score_lines
from mtx.decode.translator import BatchTranslator, Translation
from mtx.errors import MtxError, UsageError, check_positive
from mtx.serve.batcher import Batcher
from mtx.serve.detect import Detector
from mtx.serve.metrics import Metrics
from mtx.serve.schema import REPEATS, Fields, RequestError
from mtx.serve.translation_memory import Approved, TranslationMemory
from mtx.specs import parse_sample

log = logging.getLogger(__name__)

CPU_THREADS = 2  # threads of the pool for a request's CPU work (not decoding)
CPU_WAITING = 64  # requests whose CPU work waits at most; beyond, 503


@dataclass
class Limits:
    max_chars: int = 5000  # characters per request, over every text of q and the prefixes
    max_sentences: int = 128  # sentences per request, after splitting
    wait_ms: float = 5.0  # how long the batcher collects after the first waiting request
    batch_tokens: int | None = None  # source pieces a batch collects at most (None: the translator's budget / beam)
    workers: int | None = 1  # batches decoded at once, each in its own thread (None: mtx serve's default)
    max_queue: int = 1024  # sentences waiting for a batch at most; a request beyond is answered 503 at once
    req_limit: int = 0  # requests a minute per API key (else per client address); 0: no limit
    keys: frozenset[str] = frozenset()  # the API keys a request must carry (api_key); empty: none needed
    metrics: bool = True  # GET /metrics, and every request counted and timed for it
    max_texts: int = 128  # texts in one request's q at most (every route)
    cors_origins: tuple[str, ...] = ()  # origins whose browser pages may call the API (none: same origin only)
    debug: bool = False  # a 500's traceback in the log
    max_term_pieces: int = 32  # a sentence's constraint pieces at most: the search's cost grows as their cube
    memory: int = 0  # sentences the translation memory's cache holds (0: none)

    def __post_init__(self) -> None:
        """Each limit checked, named by the `mtx serve` option that sets it."""
        check_positive(max_chars=self.max_chars, max_sentences=self.max_sentences, max_texts=self.max_texts,
                       max_term_pieces=self.max_term_pieces)  # fmt: skip
        if not math.isfinite(self.wait_ms):
            raise UsageError(f"--batch-wait-ms must be a finite number, got {self.wait_ms}")
        check_positive(zero_ok=True, batch_wait_ms=self.wait_ms)
        check_positive(batch_tokens=self.batch_tokens, workers=self.workers, max_queue=self.max_queue)
        check_positive(zero_ok=True, req_limit=self.req_limit, memory=self.memory)


class Service:
    """The model behind the API: directions, detection, options; the batcher that decodes every request."""

    def __init__(self, translator: BatchTranslator, pairs: list[P.Pair], limits: Limits, engine: str = "mtx",
                 glossary: Glossary | None = None, approved: Approved | None = None):  # fmt: skip
        self.translator, self.pairs, self.limits, self.engine = translator, pairs, limits, engine
        if glossary is not None and engine != "mtx":
            raise UsageError(NO_TERMS)
        self.glossary = glossary  # the server's terms (--glossary), which a request's `glossary` adds to
        self.tokenizer = translator.tokenizer
        self.beam = translator.cfg.beam
        # what each target's sources start with: its tag, on a model of several targets
        self.prefixes = {tgt: P.prefix_ids(translator.tokenizer, pairs, tgt) for tgt in P.targets(pairs)}
        self.batch_tokens = limits.batch_tokens or max(translator.batch_tokens // max(self.beam, 1), 1)
        self.stats = {"requests": 0, "sentences": 0, "batches": 0, "refused_busy": 0, "dropped_sentences": 0}
        self.metrics = Metrics(lambda: self.batcher.queued)
        self.batcher = Batcher(translator, self.prefixes, self.batch_tokens, limits.wait_ms, limits.workers or 1,
                               limits.max_queue, self.stats, self.metrics)  # fmt: skip
        self.memory = TranslationMemory(limits.memory, approved, lambda r: self.metrics.memory.labels(r).inc())
        self.cpu_pool = ThreadPoolExecutor(CPU_THREADS, thread_name_prefix="mtx-cpu")
        self._cpu_slots = asyncio.Semaphore(CPU_WAITING)
        self._zero_shot_warned: set[str] = set()
        self._detector: Detector | None = None  # loaded on first use
        self._languages = self._sources()

    @property
    def queued(self) -> int:
        """Sentences waiting for a batch."""
        return self.batcher.queued

    async def cpu(self, fn, *args):
        """`fn(*args)` in the CPU pool (503 when too many requests wait for it)."""
        if self._cpu_slots.locked():
            self.stats["refused_busy"] += 1
            raise RequestError(503, "busy: retry in a second", {"Retry-After": "1"})
        async with self._cpu_slots:
            return await asyncio.get_running_loop().run_in_executor(self.cpu_pool, fn, *args)

    def direction(self, source, target) -> tuple[str | None, str]:
        """(source or None for "auto", target) a request asks for; a RequestError naming the model's pairs."""
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
        confidences (percent) renormalised over them (LibreTranslate's /detect). CPU work: run it in `cpu`."""
        if self._detector is None:
            self._detector = Detector([x["code"] for x in self._languages])
        ranked = self._detector.detect(text)
        if target is not None:
            ok = {x["code"] for x in self._languages if target in x["targets"]}
            ranked = [r for r in ranked if r["language"] in ok] or ranked
        total = sum(r["confidence"] for r in ranked) or 1.0
        return [{"language": r["language"], "confidence": round(100 * r["confidence"] / total, 1)} for r in ranked]

    def _warn(self, text: str) -> None:
        """Each zero-shot direction's warning, once."""
        if text not in self._zero_shot_warned:
            self._zero_shot_warned.add(text)
            log.warning(text)

    def languages(self) -> list[dict]:
        """LibreTranslate's /languages: each source language and the targets it translates into."""
        return self._languages

    def _sources(self) -> list[dict]:
        out = []
        for lang in P.languages(self.pairs):
            if P.tagged(self.pairs):  # any of its targets, the untrained directions zero-shot
                tgts = [t for t in P.targets(self.pairs) if t != lang]
            else:  # one target, reached from the trained sources
                tgts = [t for s, t in self.pairs if s == lang]
            if tgts:  # a language only translated into is no source
                out.append({"code": lang, "name": P.NAMES.get(lang, lang), "targets": tgts})
        return out

    def options(self, f: Fields) -> DecodeConfig:
        """A request's decoding options, one frozen DecodeConfig: the server's, with LibreTranslate's
        `alternatives` (N more candidates) or mtx's `sample` ("topk=K" or "topp=P"), `temperature`, `seed`, and
        mtx's `no_repeat_ngram` and `repetition_penalty` (in either)."""
        c, more = self.translator.cfg, f.alternatives
        repeats = {k: getattr(f, k) for k in REPEATS if getattr(f, k) is not None}
        if repeats:
            c = dataclasses.replace(c, **repeats)
        if f.sample is None and f.temperature is None and f.seed is None:
            return dataclasses.replace(c, nbest=more + 1, beam=max(c.beam, more + 1)) if more else c
        sample = f.sample or ""
        try:
            ok = not sample or parse_sample(sample)
        except ValueError:
            ok = False
        if not ok:
            raise RequestError(400, 'sample must be "topk=K" or "topp=P", e.g. "topk=10"')
        temp = 1.0 if f.temperature is None else f.temperature
        return dataclasses.replace(c, sample=sample, temperature=temp, seed=f.seed or 0, nbest=more + 1)

    def glossaries_for(self, f: Fields) -> list[Glossary]:
        """The glossaries of a request: its `glossary` field's (an object, or a form's TSV lines, checked as a
        glossary file is), then the server's; the request's terms win where the two overlap."""
        server = [self.glossary] if self.glossary is not None else []
        if f.glossary is None:
            return server
        if self.engine != "mtx":
            raise RequestError(400, f"glossary: {NO_TERMS}")
        if isinstance(f.glossary, dict) and not all(s.strip() and t.strip() for s, t in f.glossary.items()):
            raise RequestError(400, "glossary: a source or target term is empty")
        rows = f.glossary.splitlines() if isinstance(f.glossary, str) else [f"{s}\t{t}" for s, t in f.glossary.items()]
        try:
            return [parse_glossary(rows, "glossary"), *server]
        except MtxError as e:
            raise RequestError(400, str(e)) from None

    def score(self, tgt: str, sources: list[str], translations: list[str]) -> list[Score]:
        """The model's scores of the translations (mtx's engine only). Model work: run it in a thread."""
        model = getattr(self.translator, "model", None)
        pairs = list(zip(sources, translations, strict=True))
        options = {"prefix": self.prefixes[tgt], "alpha": self.translator.cfg.alpha}
        options["batch_tokens"] = self.translator.batch_tokens
        return list(score_lines(model, self.tokenizer, pairs, **options))

    async def translate(self, srcs: list[str | None], tgt: str, sentences: list[str], ids: list[list[int]],
                        forced: list[list[int]] | None, options: DecodeConfig, terms=None,
                        ) -> list[Translation]:  # fmt: skip
        """The translations of a request's sentences (`srcs`: each one's source language): from the translation
        memory where it has them, the others decoded by the batcher (and remembered)."""
        if not self.memory:
            return await self.batcher.translate(tgt, ids, forced, options, terms)
        keys = [self.memory.key(tgt, x, options, forced[i] if forced else None, terms[i] if terms else None)
                for i, x in enumerate(ids)]  # fmt: skip
        encode = self.tokenizer.encode
        out = self.memory.lookup(srcs, tgt, sentences, keys, lambda t: encode([t])[0], options.nbest)
        todo = [i for i, tr in enumerate(out) if tr is None]
        if todo:
            pick = lambda xs: None if xs is None else [xs[i] for i in todo]  # noqa: E731
            done = await self.batcher.translate(tgt, pick(ids), pick(forced), options, pick(terms))
            self.memory.keep([keys[i] for i in todo], done)
            for i, tr in zip(todo, done, strict=True):
                out[i] = tr
        return out  # type: ignore[return-value]: every sentence has its translation by now

    async def run(self) -> None:
        await self.batcher.run()
