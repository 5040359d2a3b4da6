"""Training data: read every pair's train and valid splits (sources.py), train the tokenizer on a bounded sample,
encode once into cached Arrow columns (encode.py), clean, batch.

One pair (`--src de --tgt en`) works as it always did: the tokenizer trained on the pair's train lines, no tags.
Several (`--pairs de-en,en-de`): a joint tokenizer over an even sample of every language's train lines, with a
target-language tag `<2xx>` before each source when there is more than one target (pairs.py), and an epoch
that mixes the pairs by temperature sampling. Under torchrun, rank 0 reads, trains the tokenizer and encodes; the
other ranks then read the same caches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtx.config import Config, DataConfig
from mtx.console import spinner
from mtx.data import pairs as P
from mtx.data.batching import TrainBatches
from mtx.data.encode import IdColumn, encode_split, tokenizer_cache
from mtx.data.sources import Corpus, PairSplit
from mtx.data.text import Split
from mtx.data.tokenizer import Tokenizer
from mtx.errors import MtxError
from mtx.files import atomic_write

log = logging.getLogger(__name__)

SHOWN = 5  # dropped empty lines named in the log


@dataclass
class ValidSet:
    """One pair's validation split, encoded; `prefix` is the tag its sources carry (none for one target)."""

    pair: P.Pair
    split: Split
    src: list[list[int]]
    tgt: list[list[int]]
    prefix: list[int]


@dataclass
class Data:
    tokenizer: Tokenizer
    train: TrainBatches
    valid: list[ValidSet]
    dir: str  # where the corpus was read
    report: dict = field(default_factory=dict)  # per pair: rows, what cleaning dropped, the cache, held-out
    seconds: dict = field(default_factory=dict)  # reading, tokenizer training, encoding


def prepare_data(
    cfg: Config,
    corpus: Corpus | Path | str,
    tok: Tokenizer | None = None,
    main: bool = True,
    from_main: Callable[[bytes | None], bytes] = lambda proto: proto,
) -> Data:
    """Read every pair's train/valid, train the tokenizer (unless given, as on resume), encode (or find the
    encoding in the cache), clean, and hold out a validation set where the corpus has none. Under torchrun only
    the `main` process reads and encodes; `from_main` hands its tokenizer to the others (who wait for it), and
    they then find the encodings in the cache."""
    d = cfg.data
    corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus, d)
    pairs = P.pairs_of(d)
    proto = tok.proto if tok is not None else None
    seconds: dict = {}
    if main:
        parts, proto = _read_and_encode(cfg, corpus, pairs, proto, seconds)
    proto = from_main(proto)  # the other ranks wait here for rank 0's caches
    if not main:
        parts, _ = _read_and_encode(cfg, corpus, pairs, proto, {})
    tok = Tokenizer(proto)
    cfg.model.vocab_size = len(tok)
    srcs, tgts, rows, tags, sizes, sets, report = [], [], [], [], [], [], {}
    offset = 0
    for (s, t), (split, enc, valid, cached) in zip(pairs, parts, strict=True):
        prefix = P.prefix_ids(tok, pairs, t)
        xs, ys = IdColumn.of(enc, "src_ids"), IdColumn.of(enc, "tgt_ids")
        keep, rep = clean(xs.lengths, ys.lengths, len(prefix), d, split, P.name((s, t)) if len(pairs) > 1 else "")
        rep["cache"] = "hit" if cached else "written"
        if valid is None:
            held = _hold_out(keep, d.valid_size, cfg.train.seed, split.origin)
            keep[held] = False
            valid = _texts(split.ds.select(held), f"{split.name} (held out)")
            rep["valid_held_out"] = len(held)
            log.info(
                f"{split.origin}: no validation split; held out {len(held)} training pairs (seed {cfg.train.seed})"
            )
        kept = np.flatnonzero(keep)
        srcs.append(xs)
        tgts.append(ys)
        rows.append(kept + offset)
        offset += len(xs)
        if prefix:
            tags.append(np.full(len(kept), prefix[0], np.int32))
        sizes.append(len(kept))
        sets.append(_valid_set((s, t), valid, tok, prefix, cfg.model.max_len - 1))
        report[P.name((s, t))] = rep
    groups = None
    if len(pairs) > 1:
        counts = P.epoch_counts(sizes, d.temperature)
        starts = np.cumsum([0, *sizes[:-1]]).tolist()
        groups = list(zip(starts, counts, strict=True)) if counts != sizes else None
        mix = ", ".join(
            f"{P.name(p)} {n} ({c / sum(counts):.1%})" for p, n, c in zip(pairs, sizes, counts, strict=True)
        )
        log.info(f"pairs (training pairs, share of an epoch at temperature {d.temperature:g}): {mix}")
    log.info(f"tokenizer: {len(tok)} pieces; {sum(sizes)} training pairs")
    batches = TrainBatches(
        IdColumn.concat(srcs),
        IdColumn.concat(tgts),
        cfg.train.batch_tokens,
        cfg.train.seed,
        groups,
        rows=np.concatenate(rows),
        tags=np.concatenate(tags) if tags else None,
    )
    return Data(tok, batches, sets, str(corpus), report, seconds)


def _read_and_encode(cfg: Config, corpus: Corpus, pairs: list[P.Pair], proto: bytes | None, seconds: dict):
    """Per pair (train split, its encoded columns, valid split or None, whether the encoding was cached); and the
    tokenizer's bytes (trained here when `proto` is None, or found in the cache: the same data and settings
    train the same tokenizer). `seconds` gets the time of each stage."""
    d = cfg.data
    t0 = time.time()
    train, valid = [], []
    with spinner(f"reading {corpus}"):
        for s, t in pairs:
            split = corpus.split("train", s, t)
            if split is None:
                names = " or ".join(repr(x) for x in dict.fromkeys((d.train_split, "train")))
                raise MtxError(f"{corpus}: no training split (expected {names})")
            train.append(split)
            v = corpus.split("valid", s, t)
            valid.append(None if v is None else _texts(v.ds, v.name))
            if v is not None and not valid[-1].src:
                raise MtxError(f"{v.origin}: the validation split has no pair without an empty side")
    seconds["read_s"] = time.time() - t0

    def loaded() -> float:
        return sum(s.load_s for s in train)

    log.info(f"checked {corpus} ({seconds['read_s']:.1f}s)")
    t0 = time.time()
    if proto is None:
        symbols = tuple(P.tag(t) for t in P.targets(pairs)) if P.tagged(pairs) else ()
        vocab, kind, coverage = cfg.model.vocab_size, d.spm_model_type, d.spm_character_coverage
        settings = (vocab, kind, coverage, symbols, d.spm_sample_sentences, cfg.train.seed, [s.key for s in train])
        path = tokenizer_cache(repr(settings))
        if path.is_file():
            proto = path.read_bytes()
            log.info(f"tokenizer from the cache ({path})")
        else:
            with spinner("training the tokenizer"):
                sample = tokenizer_sample(pairs, train, d.spm_sample_sentences, cfg.train.seed)
                proto = Tokenizer.train(sample, vocab, kind, coverage, symbols=symbols).proto
            for split in train:
                split.release()
            atomic_write(path, proto)
            log.info(
                f"trained the tokenizer on a sample of {d.spm_sample_sentences} sentences ({time.time() - t0:.1f}s)"
            )
    seconds["tokenizer_s"] = time.time() - t0 - loaded()  # the builders' reading counts in read_s
    t0, parts, before = time.time(), [], loaded()
    for split, v in zip(train, valid, strict=True):
        enc, cached = encode_split(split, proto, d.max_tokens, d.num_proc)
        parts.append((split, enc, v, cached))
    hits = sum(p[3] for p in parts)
    how = "from the cache" if hits == len(parts) else f"{len(parts) - hits} of {len(parts)} splits encoded"
    seconds["encode_s"] = time.time() - t0 - (loaded() - before)
    seconds["read_s"] += loaded()
    log.info(f"encoded training pairs {how} ({seconds['encode_s']:.1f}s)")
    return parts, proto


def tokenizer_sample(pairs: list[P.Pair], train: list[PairSplit], limit: int, seed: int) -> Iterator[str]:
    """A seeded random sample of at most `limit` training sentences, streamed. One pair: the same rows of both
    sides. Several: every language (from the first pair that has it), each the same number of sentences, so that
    each has the same say in the vocabulary."""
    rng = np.random.default_rng(seed)
    if len(pairs) == 1:
        split = train[0]
        idx = _sample(rng, len(split), limit // 2)
        for col in ("src", "tgt"):
            yield from _column(split, idx, col)
        return
    by_lang: dict[str, tuple[PairSplit, str]] = {}
    for (s, t), split in zip(pairs, train, strict=True):
        by_lang.setdefault(s, (split, "src"))
        by_lang.setdefault(t, (split, "tgt"))
    k = min(min(len(sp) for sp, _ in by_lang.values()), limit // len(by_lang))
    for lang in P.languages(pairs):
        split, col = by_lang[lang]
        yield from _column(split, _sample(rng, len(split), k), col)


def _sample(rng: np.random.Generator, n: int, k: int, block: int = 256) -> np.ndarray:
    """`k` of `n` rows (all when k >= n), ascending: seeded random blocks of `block` consecutive rows (the last
    block the `n mod block` rows at the end), of which a run of `k` starting at a random place."""
    if k >= n:
        return np.arange(n)
    blocks = -(-n // block)
    starts = np.sort(rng.choice(blocks, min(blocks, -(-k // block) + 1), replace=False)) * block
    rows = (starts[:, None] + np.arange(block)).ravel()
    rows = rows[rows < n]
    first = int(rng.integers(0, len(rows) - k + 1)) if len(rows) > k else 0
    return rows[first : first + k]


def _column(split: PairSplit, idx: np.ndarray, col: str) -> Iterator[str]:
    """Rows `idx` (ascending) of one column, read in runs of consecutive rows; the memory-mapped pages read are
    given back after each run, so that sampling a large table never makes it resident (a touched row maps a
    whole large page of the file)."""
    ds = split.ds.select_columns([col])
    cuts = np.flatnonzero(np.diff(idx) != 1) + 1
    for run in np.split(idx, cuts):
        for a in range(int(run[0]), int(run[-1]) + 1, 10_000):
            texts = ds[a : min(a + 10_000, int(run[-1]) + 1)][col]
            split.release()
            yield from (x for x in texts if x and x.strip())


def clean(
    src_len: np.ndarray, tgt_len: np.ndarray, prefix: int, d: DataConfig, split: PairSplit, name: str = ""
) -> tuple[np.ndarray, dict]:
    """Which training pairs to keep, and how many each rule dropped: an empty side (fatal with data.strict), a
    side of data.max_tokens pieces or more, a length ratio above data.max_length_ratio (0: no ratio rule)."""
    empty = (src_len == 0) | (tgt_len == 0)
    where = f" of {name}" if name else ""
    if empty.any():
        first = np.flatnonzero(empty)[:SHOWN]
        places = [split.where(int(i), "src" if src_len[i] == 0 else "tgt") for i in first]
        if d.strict:
            raise MtxError(f"{places[0]}: empty line in a parallel corpus")
        more = ", ..." if empty.sum() > SHOWN else ""
        log.info(f"dropped {int(empty.sum())} training pairs{where} with an empty side: {', '.join(places)}{more}")
    long = ~empty & ((src_len + prefix >= d.max_tokens) | (tgt_len >= d.max_tokens))
    ratio = np.zeros_like(empty)
    if d.max_length_ratio > 0:
        lo, hi = np.minimum(src_len, tgt_len), np.maximum(src_len, tgt_len)
        ratio = ~empty & ~long & (hi > d.max_length_ratio * np.maximum(lo, 1))
    n = len(src_len)
    if long.any():
        log.info(f"filtered {int(long.sum())} of {n} training pairs{where} longer than {d.max_tokens} pieces")
    if ratio.any():
        above = f"with a length ratio above {d.max_length_ratio:g}"
        log.info(f"filtered {int(ratio.sum())} of {n} training pairs{where} {above}")
    keep = ~(empty | long | ratio)
    report = {"rows": n, "empty": int(empty.sum()), "too_long": int(long.sum()), "ratio": int(ratio.sum())}
    return keep, report | {"kept": int(keep.sum())}


def _hold_out(keep: np.ndarray, size: int, seed: int, origin: str) -> np.ndarray:
    """`size` of the kept rows (at most a tenth of them, at least one), seeded, in row order; too few rows to
    spare one is an error."""
    kept = np.flatnonzero(keep)
    if len(kept) < 2:
        raise MtxError(
            f"{origin}: {len(kept)} usable training pair(s) and no validation split: give at least 2 pairs, or a "
            "validation split (data.valid_split)"
        )
    k = max(1, min(size, len(kept) // 10))
    return np.sort(np.random.default_rng(seed).choice(kept, k, replace=False))


def _texts(ds, name: str) -> Split:
    """A small split as lists (validation), without pairs that have an empty side."""
    cols = ds.select_columns(["src", "tgt"]).to_dict()
    both = [(x, y) for x, y in zip(cols["src"], cols["tgt"], strict=True) if x and x.strip() and y and y.strip()]
    return Split(name, [x for x, _ in both], [y for _, y in both])


def _valid_set(pair: P.Pair, split: Split, tok: Tokenizer, prefix: list[int], limit: int) -> ValidSet:
    vs = [(prefix + x)[:limit] for x in tok.encode(split.src)]
    vt = [x[:limit] for x in tok.encode(split.tgt)]
    return ValidSet(pair, split, vs, vt, prefix)
