"""The second layer: requests' sentences, already encoded and validated, decoded together. No HTTP here.

`Batcher.translate(tgt, ids, heads, options)` queues one request's source ids (its target prefixes as ids) with
its decoding options, one frozen `DecodeConfig`: requests are decoded together only when their target and
options are equal, so a new option can never be merged across requests. A worker takes the first waiting
request, collects others for `wait_ms` or up to `batch_tokens` source pieces, and decodes them in a thread of
its own pool (the event loop goes on); each request is answered as soon as its last sentence is translated.
A request whose client goes away is dropped from the queue, and its sentences already in a running search leave
it at the search's next step (mtx's engine). Nothing one request holds can fail another's batch: requests are
validated whole before they get here, and a batch that fails anyway fails only its own requests."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mtx import memory
from mtx.config import DecodeConfig
from mtx.decode.translator import BatchTranslator, Translation

log = logging.getLogger(__name__)

TRIM_EVERY_S = 1.0  # seconds between two returns of freed memory to the system


class Busy(Exception):
    """The queue is full: the request is refused at once (503)."""


@dataclass(eq=False)
class _Job:
    tgt: str
    ids: list[list[int]]
    heads: list[list[int]] | None  # each sentence's target prefix ids ([] none), or None
    options: DecodeConfig
    future: asyncio.Future
    tokens: int
    terms: list[list[list[int]]] | None = None  # each sentence's constraints (ids), or None
    texts: list[Translation | None] = field(default_factory=list)
    left: int = 0
    running: tuple | None = None  # (the running group's dropped set holder, this job's first input index)


class _Group:
    """Jobs decoded in one call: the inputs whose clients went away (read by the decoding thread)."""

    def __init__(self):
        self.gone: frozenset[int] = frozenset()

    def drop(self, rows: range) -> None:
        self.gone = self.gone | frozenset(rows)  # a new set each time: the decoding thread reads a whole one


class Batcher:
    def __init__(self, translator: BatchTranslator, prefixes: dict[str, list[int]], batch_tokens: int,
                 wait_ms: float, workers: int, max_queue: int, stats: dict, metrics=None):  # fmt: skip
        self.translator, self.prefixes, self.batch_tokens = translator, prefixes, batch_tokens
        self.wait_ms, self.workers, self.max_queue, self.stats, self.metrics = (
            wait_ms,
            workers,
            max_queue,
            stats,
            metrics,
        )
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="mtx-decode")
        self._pending: list[_Job] = []
        self._arrived: asyncio.Event | None = None
        self._collecting: asyncio.Lock | None = None
        self._trimmed = 0.0

    @property
    def queued(self) -> int:
        """Sentences of the requests waiting for a batch."""
        return sum(len(j.ids) for j in self._pending)

    async def translate(self, tgt: str, ids: list[list[int]], heads: list[list[int]] | None,
                        options: DecodeConfig, terms: list[list[list[int]]] | None = None,
                        ) -> list[Translation]:  # fmt: skip
        """The translations of one request's sentences, in order (Busy when the queue is full); `terms`: each
        sentence's constraints (token ids), which its translation holds."""
        if not ids:
            return []
        if self.queued + len(ids) > self.max_queue:
            self.stats["refused_busy"] += 1
            raise Busy(f"busy: {self.queued} sentences are waiting; retry in a second")
        tokens = sum(len(x) + 1 for x in ids)
        job = _Job(tgt, ids, heads, options, asyncio.get_running_loop().create_future(), tokens, terms)
        self._pending.append(job)
        assert self._arrived is not None, "the batcher is not running"
        self._arrived.set()
        try:
            return await job.future
        except asyncio.CancelledError:  # the client went away: nothing more is decoded for it
            job.future.cancel()
            if job in self._pending:
                self._pending.remove(job)
                self.stats["dropped_sentences"] += len(ids)
            elif job.running is not None:
                group, first = job.running
                group.drop(range(first, first + len(ids)))
                self.stats["dropped_sentences"] += job.left
            raise

    async def run(self) -> None:
        """The workers, each in turn collecting a batch and decoding it while the next collects."""
        self._arrived, self._collecting = asyncio.Event(), asyncio.Lock()
        try:
            await asyncio.gather(*(self._worker() for _ in range(self.workers)))
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)

    async def _collect(self) -> list[_Job]:
        loop = asyncio.get_running_loop()
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = loop.time() + self.wait_ms / 1000
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
        return [j for j in jobs if not j.future.done()]

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            async with self._collecting:
                jobs = await self._collect()
            if not jobs:
                continue
            self.stats["batches"] += 1
            if self.metrics is not None:
                self.metrics.batch.observe(sum(len(j.ids) for j in jobs))
            groups: dict[tuple[str, DecodeConfig], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.tgt, job.options), []).append(job)
            for (tgt, options), group in groups.items():
                await self._decode(tgt, options, group)
            if loop.time() - self._trimmed > TRIM_EVERY_S:  # freed blocks back to the system, as training does
                memory.trim()
                self._trimmed = loop.time()

    async def _decode(self, tgt: str, options: DecodeConfig, jobs: list[_Job]) -> None:
        """Decode one group in the pool; each request answered as its last sentence is translated."""
        loop = asyncio.get_running_loop()
        holder, owner, first = _Group(), [], 0
        for job in jobs:
            job.texts, job.left, job.running = [None] * len(job.ids), len(job.ids), (holder, first)
            owner += [(job, k) for k in range(len(job.ids))]
            first += len(job.ids)

        def deliver(i: int, tr: Translation) -> None:  # on the event loop
            job, k = owner[i]
            if job.texts[k] is not None or job.future.done():
                return
            job.texts[k] = tr
            self.stats["sentences"] += 1
            if self.metrics is not None:
                self.metrics.sentences.inc()
            job.left -= 1
            if job.left == 0:
                job.future.set_result(job.texts)

        def heard(i: int, tr: Translation) -> None:  # in the decoding thread
            loop.call_soon_threadsafe(deliver, i, tr)

        ids = [x for job in jobs for x in job.ids]
        heads = None
        if any(job.heads for job in jobs):
            heads = [h for job in jobs for h in (job.heads or [[]] * len(job.ids))]
        terms = None
        if any(job.terms for job in jobs):
            terms = [t for job in jobs for t in (job.terms or [[]] * len(job.ids))]
        options = {"prefix": self.prefixes[tgt], "forced": heads, "terms": terms, "decode": options,
                   "on_sentence": heard, "dropped": lambda: holder.gone}  # fmt: skip
        try:
            out = await loop.run_in_executor(self.pool, lambda: self.translator.decode_ids(ids, **options))
        except Exception as e:  # this group's requests only: answered 500, the rest go on
            log.error(f"error: a batch of {len(ids)} sentences failed: {type(e).__name__}: {e}")
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        for i, tr in enumerate(out):  # those an engine did not report one by one
            deliver(i, tr)
