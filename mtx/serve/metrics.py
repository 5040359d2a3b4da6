"""`GET /metrics` in Prometheus' text format (prometheus-client), one registry per app: requests by route and
status, request latency, sentences per decoding batch, sentences waiting, sentences decoded, the translation
memory's hits and misses."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

ROUTES = ("/translate", "/translate_file", "/detect", "/score", "/languages", "/health", "/frontend/settings",
          "/metrics", "/")  # fmt: skip


class Metrics:
    def __init__(self, queued):
        """`queued()`: the sentences waiting for a batch now."""
        self.registry = r = CollectorRegistry()
        self.requests = Counter("mtx_requests", "HTTP requests answered", ["route", "code"], registry=r)
        self.latency = Histogram(
            "mtx_request_seconds", "Time from a request's arrival to its answer", ["route"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )  # fmt: skip
        self.batch = Histogram("mtx_batch_sentences", "Sentences a decoding batch holds", registry=r,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))  # fmt: skip
        self.sentences = Counter("mtx_sentences_decoded", "Sentences translated", registry=r)
        self.memory = Counter("mtx_memory_sentences", "Sentences looked up in the translation memory, by result "
                              "(approved, hit, miss)", ["result"], registry=r)  # fmt: skip
        for result in ("approved", "hit", "miss"):  # each series there from the start, at 0
            self.memory.labels(result)
        Gauge("mtx_queue_sentences", "Sentences waiting for a batch", registry=r).set_function(queued)

    def page(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def middleware(self, app):
        """ASGI middleware that counts every HTTP request by route (others: "other") and status, and times it."""

        async def wrapped(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            route = scope.get("path", "")
            route = route if route in ROUTES else "other"
            start, status = time.perf_counter(), [500]

            async def watch(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, watch)
            finally:
                self.requests.labels(route, str(status[0])).inc()
                self.latency.labels(route).observe(time.perf_counter() - start)

        return wrapped
