"""`mtx bench decode`: the speed, memory and BLEU of decoding a test set under each setting, one JSON object each;
a benchmark, never used as a test."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from mtx import measure
from mtx.data.multi30k import default_data_dir
from mtx.data.pairs import pairs_of, prefix_ids
from mtx.data.text import check_parallel, read_lines, split_paths
from mtx.decode.load import ENGINES, load
from mtx.decode.metrics import bleu
from mtx.device import resolve_device
from mtx.errors import MtxError, UsageError, check_positive

SETTINGS = ("greedy", "beam", "beam_nocache")
PRECISIONS = ("fp32", "int8", "bf16", "fp16")


def settings_of(text: str | None, engine: str, precision: str) -> list[str]:
    """The settings `--settings` names (default: all; ct2: greedy,beam), checked with the engine and precision."""
    names = [s.strip() for s in (text or ("greedy,beam" if engine == "ct2" else ",".join(SETTINGS))).split(",")]
    for n in filter(None, names):
        if n not in SETTINGS:
            raise UsageError(f"--settings: unknown setting {n!r} (greedy, beam, beam_nocache)")
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: expected fp32, int8, bf16 or fp16")
    if engine not in ENGINES or (engine == "ct2" and "beam_nocache" in names):
        raise UsageError(f"--engine {engine}: expected mtx, or ct2 without beam_nocache")
    return [n for n in names if n]


def _items(text: str, option: str, allowed: tuple[str, ...]) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items or any(x not in allowed for x in items):
        raise UsageError(f"--{option} {text!r}: expected one or more of {', '.join(allowed)}, comma-separated")
    return list(dict.fromkeys(items))


def decode(
    model_dir: Path | list[Path],
    data_dir: Path | None,
    split: str,
    device: str,
    beam: int,
    batch_tokens: int | None,
    settings: str | None,
    limit: int = 0,
    precision: str = "fp32",
    engine: str = "mtx",
    shortlist: str = "off",
    rounds: int = 1,
) -> Iterator[dict]:
    """Decode `split` (of the default corpus without `data_dir`) under each of the comma-separated `settings`
    (greedy, beam, beam_nocache; None: all that the engine has) and yield speed, memory and BLEU (a model of
    several pairs: its first), with mtx's search or (`engine="ct2"`) CTranslate2's. `engine`, `precision` and
    `shortlist` (off, on) may each name several, comma-separated: every combination is timed, one after the
    other, `rounds` times over (A/B alternating, so that a machine's drift hits each alike), and reported with
    the median of its rounds."""
    check_positive(beam=beam, rounds=rounds)
    engines = _items(engine, "engine", ENGINES)
    precisions = _items(precision, "precision", PRECISIONS)
    shorts = [x == "on" for x in _items(shortlist, "shortlist", ("off", "on"))]
    names = {e: settings_of(settings, e, p) for e in engines for p in precisions}
    if len(engines) > 1:  # each engine in a process of its own: their thread pools slowed each other down
        args = [split, device, beam, batch_tokens, settings, limit, precision, shortlist]
        yield from _separately(model_dir, data_dir, engines, rounds, *args)
        return
    resolve_device(device)
    loaded = {e: load(model_dir, e, device, precision=precisions[0], shortlist=any(shorts)) for e in engines}
    translator, cfg = loaded[engines[0]]
    trained = pairs_of(cfg.data)
    src_path, ref_path = split_paths(data_dir or default_data_dir(), split, *trained[0])
    check_parallel(src_path, ref_path)
    sources, refs = read_lines(src_path), read_lines(ref_path)
    if limit:
        sources, refs = sources[:limit], refs[:limit]
    runs = [(e, p, s, n) for e in engines for p in precisions for s in shorts for n in names[e]]
    times: dict[tuple, list[float]] = {r: [] for r in runs}
    hyps: dict[tuple, list[str]] = {}
    for rnd in range(rounds):
        for run in runs:
            e, p, s, name = run
            translator, cfg = loaded[e]
            dev = translator.device
            prefix = prefix_ids(translator.tokenizer, trained, trained[0][1])
            d = dataclasses.replace(cfg.decode, beam=1 if name == "greedy" else beam, precision=p, shortlist=s,
                                    batch_tokens=batch_tokens or cfg.decode.batch_tokens)  # fmt: skip
            options = {"prefix": prefix, "decode": d, "use_cache": name != "beam_nocache"}
            if rnd == 0:
                translator.translate(sources[:32], **options)  # warm-up
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
            t0 = time.perf_counter()
            hyps[run] = [t.text for t in translator.translate(sources, **options)]
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times[run].append(time.perf_counter() - t0)
    for run in runs:
        e, p, s, name = run
        translator, cfg = loaded[e]
        dev = translator.device
        dt = statistics.median(times[run])
        n_tok = sum(len(x) + 1 for x in translator.tokenizer.encode(hyps[run]))
        outputs = "".join(h + "\n" for h in hyps[run]).encode()
        yield {
            "setting": name,
            "beam": 1 if name == "greedy" else beam,
            "sentences": len(sources),
            "seconds": round(dt, 3),
            "sents_per_s": round(len(sources) / dt, 1),
            "tgt_tokens_per_s": round(n_tok / dt, 1),
            "rounds_sents_per_s": [round(len(sources) / t, 1) for t in times[run]],
            "peak_mem_mb": round(measure.peak_mb(dev), 1),
            "bleu": round(bleu(hyps[run], refs), 2),
            "outputs_sha1": hashlib.sha1(outputs).hexdigest(),  # equal digests: the same translations
            "batch_tokens": translator.budget(cfg.decode),
            "precision": p,
            "shortlist": s,
            "engine": e,
            "device": measure.name(dev),
            "threads": torch.get_num_threads(),
        }


def _separately(model_dir: Path | list[Path], data_dir: Path | None, engines: list[str], rounds: int, split: str,
                device: str, beam: int, batch_tokens: int | None, settings: str | None, limit: int, precision: str,
                shortlist: str) -> Iterator[dict]:  # fmt: skip
    """`decode` of each engine in a child process, engine after engine, `rounds` times; each combination's record
    is the round of median speed, with every round's sentences/s."""
    models = model_dir if isinstance(model_dir, list) else [model_dir]
    base = [sys.executable, "-m", "mtx", "bench", "decode", "--split", split, "--device", device, "--beam", str(beam),
            "--limit", str(limit), "--precision", precision, "--shortlist", shortlist, "--rounds", "1"]  # fmt: skip
    base += [a for m in models for a in ("--model", str(m))]
    base += ["--data", str(data_dir)] if data_dir is not None else []
    base += ["--batch-tokens", str(batch_tokens)] if batch_tokens else []
    base += ["--settings", settings] if settings else []
    runs: dict[tuple, list[dict]] = {}
    for _ in range(rounds):
        for e in engines:
            done = subprocess.run([*base, "--engine", e], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise MtxError(f"bench decode --engine {e}: {done.stderr.strip().splitlines()[-1:]}")
            for line in done.stdout.splitlines():
                rec = json.loads(line)
                runs.setdefault((rec["engine"], rec["precision"], rec["shortlist"], rec["setting"]), []).append(rec)
    for recs in runs.values():
        mid = sorted(recs, key=lambda r: r["sents_per_s"])[len(recs) // 2]
        yield {**mid, "rounds_sents_per_s": [r["sents_per_s"] for r in recs], "processes": "one per engine"}
