"""Terms that must be used (issue 34): a term set made from val and test_2016_flickr, then the share of terms the
translations use, BLEU on those sentences, and the decoding speed, without and with the terms as constraints.

The term set (as documented in docs/recipes.md):
1. a German-English word lexicon from the *training* split: for each German word (3+ letters, as written), the
   English words (as written) whose sentence co-occurrence has a Dice coefficient of at least 0.2 with it (seen
   together in 5+ sentence pairs), the three best;
2. the model's plain translation of each val/test sentence (beam 5);
3. a term is a (German word of the source, English word of the lexicon's for it) where the reference holds the
   English word and the plain translation does not: a word the model translates otherwise than the reference;
4. the sentences with one to three such terms (the first three, each German and English word once), each with
   its terms as its constraints.

    python scripts/terms_bench.py MODEL_DIR [--beams 5,10] [--limit N]   (from the project's root)
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from itertools import product
from pathlib import Path

from mtx.data.multi30k import ensure_data_dir
from mtx.decode.load import load
from mtx.decode.metrics import score

WORD = re.compile(r"[^\W\d_]{3,}")


def words(line: str) -> list[str]:
    return WORD.findall(line)


def lexicon(de: list[str], en: list[str], min_pairs: int = 5, min_dice: float = 0.2, best: int = 3) -> dict:
    """German word -> its English words, best Dice first."""
    cd, ce, both = Counter(), Counter(), Counter()
    for s, t in zip(de, en, strict=True):
        ws, wt = set(words(s)), set(words(t))
        cd.update(ws)
        ce.update(wt)
        both.update(product(ws, wt))
    scored: dict[str, list[tuple[float, str]]] = {}
    for (s, t), n in both.items():
        if n >= min_pairs:
            dice = 2 * n / (cd[s] + ce[t])
            if dice >= min_dice:
                scored.setdefault(s, []).append((dice, t))
    return {s: [t for _, t in sorted(v, reverse=True)[:best]] for s, v in scored.items()}


def term_set(lex: dict, src: list[str], ref: list[str], hyp: list[str]) -> list[tuple[int, list[tuple[str, str]]]]:
    """(sentence index, [(German word, English word)]) for the sentences with one to three terms."""
    out = []
    for i, (s, r, h) in enumerate(zip(src, ref, hyp, strict=True)):
        in_ref, in_hyp, terms = set(words(r)), set(words(h)), []
        for w in dict.fromkeys(words(s)):
            for e in lex.get(w, []):
                if e in in_ref and e not in in_hyp and all(e != x for _, x in terms):
                    terms.append((w, e))
                    break
        if terms:
            out.append((i, terms[:3]))
    return out


def used(hyps: list[str], terms: list[list[str]]) -> tuple[int, int]:
    total = sum(len(t) for t in terms)
    return sum(e in set(words(h)) for h, ts in zip(hyps, terms, strict=True) for e in ts), total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--beams", default="5,10")
    ap.add_argument("--limit", type=int, default=0, help="at most this many sentences of each split (0: all)")
    a = ap.parse_args()
    d = ensure_data_dir(("de", "en"))
    read = lambda name: (d / name).read_text(encoding="utf-8").splitlines()  # noqa: E731
    lex = lexicon(read("train.de"), read("train.en"))
    print(f"lexicon: {len(lex)} German words, {sum(map(len, lex.values()))} pairs (train, Dice >= 0.2)")
    for split in ("val", "test_2016_flickr"):
        src, ref = read(f"{split}.de"), read(f"{split}.en")
        if a.limit:
            src, ref = src[: a.limit], ref[: a.limit]
        plain, _ = load(a.model, "mtx", "cpu", beam=5)
        hyp = [t.text for t in plain.translate(src)]
        ts = term_set(lex, src, ref, hyp)
        idx = [i for i, _ in ts]
        sub_src, sub_ref = [src[i] for i in idx], [ref[i] for i in idx]
        terms = [[e for _, e in t] for _, t in ts]
        n_terms = sum(map(len, terms))
        print(f"\n{split}: {len(idx)} of {len(src)} sentences with 1-3 terms ({n_terms} terms); e.g. {ts[0][1]}")
        for beam in [int(b) for b in a.beams.split(",")]:
            tr, _ = load(a.model, "mtx", "cpu", beam=beam)
            for how, cons in (("plain", None), ("constrained", terms)):
                t0 = time.time()
                out = [t.text for t in tr.translate(sub_src, constraints=cons)]
                secs = time.time() - t0
                k, n = used(out, terms)
                s = score(out, sub_ref)
                print(f"  beam {beam:>2} {how:<12} terms used {k}/{n} ({100 * k / n:5.1f}%)  BLEU {s.bleu:5.2f}  "
                      f"chrF2 {s.chrf:5.2f}  {len(sub_src) / secs:6.1f} sent/s ({secs:.1f}s)")  # fmt: skip


if __name__ == "__main__":
    main()
