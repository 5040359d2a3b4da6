"""`mtx serve`."""

from pathlib import Path

from typer import Option as Opt

from mtx.cli import common as o

WORKERS = "Batches decoded at once, sharing the CPU threads."


def serve(
    model: list[Path] = o.MODELS,
    engine: str = Opt("mtx", help="mtx or ct2 (CTranslate2; exports on first use)."),
    host: str = Opt("127.0.0.1", help="Address to listen on."),
    port: int = Opt(5000, help="Port (0: any free one; the first line printed names it)."),
    beam: int | None = o.MODEL_BEAM,
    no_repeat_ngram: int | None = o.NO_REPEAT,
    repetition_penalty: float | None = o.REPETITION_PENALTY,
    glossary: Path | None = o.GLOSSARY,
    precision: str | None = o.PRECISION,
    shortlist: bool | None = o.SHORTLIST,
    device: str = o.DEVICE,
    max_chars: int = Opt(5000, "--max-chars", "--char-limit", help="Characters per request at most (prefix too)."),
    max_sentences: int = Opt(128, help="Sentences per request at most."),
    max_texts: int = Opt(128, help="Texts (items of q) per request at most."),
    max_term_pieces: int = Opt(32, help="Pieces of glossary terms and constraints per sentence at most."),
    batch_wait_ms: float = Opt(5.0, help="How long a batch collects requests."),
    batch_tokens: int | None = Opt(None, help="Source pieces a batch collects at most.", show_default="12,000 / beam"),
    max_queue: int = Opt(1024, help="Sentences waiting for a batch at most; beyond, a request is answered 503."),
    allowed_hosts: list[str] | None = Opt(None, help="Host header names to accept besides loopback's and --host."),
    cors_origins: list[str] | None = Opt(None, help="Origins whose web pages may call the API (CORS; off)."),
    forwarded_allow_ips: list[str] | None = Opt(None, help="Proxies whose X-Forwarded-For is believed (none)."),
    workers: int | None = Opt(None, help=WORKERS, show_default="2 on a CPU, 1 on a GPU"),
    api_keys: Path | None = Opt(None, help="A file of API keys, one a line: requests must carry one (api_key)."),
    req_limit: int = Opt(0, help="Requests a minute per API key, else per client address (0: no limit)."),
    memory: int = Opt(10_000, help="Sentences the translation memory keeps: exact repeats answered at once (0: off)."),
    memory_file: Path | None = Opt(None, help="A TMX or TSV of approved translations, used for an exact source."),
    metrics: bool = Opt(True, help="GET /metrics (Prometheus' text format)."),
    debug: bool = Opt(False, help="Log the traceback of an internal error (else one line)."),
) -> None:
    """Serve the model over HTTP: LibreTranslate's API and web page (docs/deploy.md), /health and /metrics."""
    from mtx.serve.app import Limits, read_keys  # the server's packages, for `serve` only
    from mtx.serve.app import serve as run_server

    keys = frozenset(read_keys(api_keys)) if api_keys else frozenset()
    limits = Limits(max_chars, max_sentences, batch_wait_ms, batch_tokens, workers, max_queue, req_limit, keys, metrics,
                    max_texts, tuple(cors_origins or ()), debug, max_term_pieces, memory)  # fmt: skip
    decoding = {"beam": beam, "no_repeat_ngram": no_repeat_ngram, "repetition_penalty": repetition_penalty}
    decoding |= {"precision": precision, "shortlist": shortlist}
    run_server(model, engine, host, port, decoding, device, limits, allowed_hosts or [], forwarded_allow_ips, glossary,
               memory_file)  # fmt: skip
