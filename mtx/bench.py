"""Benchmarks that print figures (one JSON object per setting); never used as tests."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from mtx import checkpoint
from mtx.corpus import check_parallel, read_lines, split_paths
from mtx.metrics import bleu
from mtx.translator import Translator


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (KiB on Linux)


def decode(
    model_dir: Path,
    data_dir: Path,
    split: str,
    device: torch.device,
    beam: int,
    batch_tokens: int | None,
    settings: list[str],
    limit: int = 0,
    precision: str = "fp32",
) -> Iterator[dict]:
    """Decode `split` under each setting (greedy, beam, beam_nocache) and yield speed, memory and BLEU."""
    model, tokenizer, cfg, _ = checkpoint.load(model_dir, device)
    src_path, ref_path = split_paths(data_dir, split, cfg.data.src, cfg.data.tgt)
    check_parallel(src_path, ref_path)
    sources, refs = read_lines(src_path), read_lines(ref_path)
    if limit:
        sources, refs = sources[:limit], refs[:limit]
    if batch_tokens:
        cfg.decode.batch_tokens = batch_tokens
    cfg.decode.precision = precision
    for name in settings:
        cfg.decode.beam = 1 if name == "greedy" else beam
        translator = Translator(model, tokenizer, cfg.decode, device)
        translator.translate(sources[:32], use_cache=name != "beam_nocache")  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        hyps = [t.text for t in translator.translate(sources, use_cache=name != "beam_nocache")]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        n_tok = sum(len(x) + 1 for x in tokenizer.encode(hyps))
        yield {
            "setting": name,
            "beam": cfg.decode.beam,
            "sentences": len(sources),
            "seconds": round(dt, 3),
            "sents_per_s": round(len(sources) / dt, 1),
            "tgt_tokens_per_s": round(n_tok / dt, 1),
            "peak_mem_mb": round(_peak_mb(device), 1),
            "bleu": round(bleu(hyps, refs), 2),
            "batch_tokens": translator.batch_tokens,
            "precision": precision,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
        }
