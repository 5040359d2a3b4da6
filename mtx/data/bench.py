"""`mtx bench data`: how long preparing a corpus takes and how much memory it holds, cold and cached.

Each preparation runs in a fresh process (so that its peak RSS is its own): the first with an empty cache
(`HF_HOME` in a new folder), the second with the caches the first wrote. `--pairs N` makes a corpus of N pairs
by repeating the default corpus' training split (a stand-in for a large corpus, with its sentence lengths).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mtx.config import build_config
from mtx.console import log_to_stderr
from mtx.data.multi30k import default_data_dir
from mtx.data.prepare import prepare_data
from mtx.errors import MtxError, UsageError


def make_corpus(out: Path, n: int, source: Path, langs: tuple[str, str] = ("de", "en")) -> Path:
    """`out`/train.{src,tgt} with `n` pairs (`source`'s train split, repeated) and `source`'s val split."""
    out.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        lines = (source / f"train.{lang}").read_bytes().splitlines(keepends=True)
        if not lines:
            raise MtxError(f"{source / f'train.{lang}'}: file is empty")
        with open(out / f"train.{lang}", "wb") as f:
            for start in range(0, n, len(lines)):
                f.writelines(lines[: min(len(lines), n - start)])
        (out / f"val.{lang}").write_bytes((source / f"val.{lang}").read_bytes())
    return out


def prepare_once(spec: str, settings: list[str]) -> dict:
    """Prepare the data as `mtx train` does (in this process); timings, peak RSS, the batches' padding."""
    t0 = time.time()
    log_to_stderr()
    cfg = build_config(None, settings)
    data = prepare_data(cfg, spec)
    total = time.time() - t0
    tb = data.train
    batches = tb.epoch(0)
    src, tgt = tb.src_len.numpy(), tb.tgt_len.numpy()
    real = padded = 0
    for b in batches:
        real += int(src[b].sum() + tgt[b].sum())
        padded += len(b) * int(src[b].max() + tgt[b].max())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        **{k: round(v, 2) for k, v in data.seconds.items()},
        "total_s": round(total, 2),
        "train_pairs": len(tb),
        "pairs_per_s": round(sum(r["rows"] for r in data.report.values()) / total),
        "peak_rss_mb": round(rss),
        "workers_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "index_mb": round((tb.rows.nbytes + tb.src_len.numel() * 12 + tb.src.lengths.nbytes * 2) / 2**20, 1),
        "padding_fraction": round(1 - real / padded, 4),
        "batches": len(batches),
        "cache": sorted({r["cache"] for r in data.report.values()}),
    }


def run(spec: str, settings: list[str], hf_home: Path | None = None) -> list[dict]:
    """Cold, then cached: one record each, from a fresh process each."""
    home = hf_home or Path(tempfile.mkdtemp(prefix="mtx-bench-hf-"))
    code = (
        "import json, sys; from mtx.data.bench import prepare_once as p; print(json.dumps(p(*json.loads(sys.argv[1]))))"
    )
    recs = []
    for run_name in ("cold", "cached"):
        env = {**os.environ, "HF_HOME": str(home)}
        p = subprocess.run(
            [sys.executable, "-c", code, json.dumps([spec, settings])], env=env, capture_output=True, text=True
        )
        if p.returncode != 0:
            raise MtxError(f"bench data: the {run_name} preparation failed: {p.stderr.strip().splitlines()[-1:]}")
        recs.append({"run": run_name, **json.loads(p.stdout.strip().splitlines()[-1])})
    return recs


def bench(pairs: int | None, data: str | None, langs: tuple[str, str], workdir: Path | None, settings: list[str]):
    """The records of `run` on a made corpus of `pairs` pairs (in `workdir`, else a temp dir removed afterwards) or
    on the corpus `data`."""
    if (pairs is None) == (data is None):
        raise UsageError("give one of --pairs N (a made corpus) or --data D")
    if pairs is not None and pairs <= 0:
        raise UsageError(f"--pairs must be > 0, got {pairs}")
    work = workdir or Path(tempfile.mkdtemp(prefix="mtx-bench-data-"))
    try:
        spec = data or str(make_corpus(work / f"corpus-{pairs}", pairs, default_data_dir(), langs))
        settings = [*settings, f"data.src={langs[0]}", f"data.tgt={langs[1]}"]
        return [{"pairs": pairs, "data": data, **rec} for rec in run(spec, settings, work / "hf")]
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
