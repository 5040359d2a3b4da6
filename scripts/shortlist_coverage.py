"""How much of a split's reference pieces the shortlist lets through, and how large the batch vocabularies are,
for several k, n and rankings (Dice, raw count): the figures that chose data.shortlist_k/_n (docs/performance.md).

    python scripts/shortlist_coverage.py MODEL [--split val] [--batch 64]
"""

import argparse
import statistics
from pathlib import Path

import numpy as np

from mtx import checkpoint
from mtx.data.multi30k import default_data_dir
from mtx.data.pairs import pairs_of
from mtx.data.prepare import prepare_data
from mtx.data.shortlist import learn
from mtx.data.sources import data_spec
from mtx.data.text import read_lines, split_paths
from mtx.data.tokenizer import Tokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--batch", type=int, default=64, help="sentences a batch (its vocabulary: the union)")
    a = ap.parse_args()
    cfg, _ = checkpoint.read_config(a.model)
    tok = Tokenizer.load(a.model / checkpoint.TOKENIZER)
    corpus = data_spec(None, cfg.data) or default_data_dir()
    data = prepare_data(cfg, corpus, tok)
    s, t = pairs_of(cfg.data)[0]
    src_path, ref_path = split_paths(Path(corpus), a.split, s, t)
    src, ref = tok.encode(read_lines(src_path)), tok.encode(read_lines(ref_path))
    b = data.train
    print("| ranking | k | n | reference pieces covered | sentences wholly covered | batch vocabulary (mean) |")
    print("|---|---|---|---|---|---|")
    for by in ("dice", "count"):
        for k in (10, 20, 50, 100):
            for n in (50, 100, 200):
                short = learn(b.src, b.tgt, b.rows, len(tok), k, n, by=by)
                hit = total = whole = 0
                for x, y in zip(src, ref, strict=True):
                    v = set(short.vocab([x]).tolist())
                    inside = sum(p in v for p in y)
                    hit, total, whole = hit + inside, total + len(y), whole + (inside == len(y))
                sizes = [len(short.vocab(src[i : i + a.batch])) for i in range(0, len(src), a.batch)]
                print(f"| {by} | {k} | {n} | {100 * hit / total:.2f}% | {100 * whole / len(src):.1f}% | "
                      f"{statistics.mean(sizes):.0f} of {len(tok)} |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
