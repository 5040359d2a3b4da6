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
from mtx.data.augment import Augmenter, with_case_copies
from mtx.data.batching import TrainBatches
from mtx.data.encode import IdColumn, encode_split, tokenizer_cache
from mtx.data.resegment import Resegmenter
from mtx.data.sources import Corpus, PairSplit
from mtx.data.text import Split
from mtx.data.tokenizer import PAD, Tokenizer
from mtx.errors import MtxError, UsageError
from mtx.files import atomic_write
from mtx.specs import JOIN, CorpusSpec, parse_corpora

log = logging.getLogger(__name__)

SHOWN = 5  # dropped empty lines named in the log


@dataclass
class ValidSet:
    """One pair's validation split, encoded; `prefix` is what its sources start with (the target tag of a model
    of several targets, the corpus' tag); `name` says which it is in the log (the pair, and the corpus when several
    give one)."""

    pair: P.Pair
    split: Split
    src: list[list[int]]
    tgt: list[list[int]]
    prefix: list[int]
    name: str = ""


@dataclass
class Part:
    """One pair of one corpus: its train split, its validation split (None: none) and, once encoded, its ids."""

    corpus: int  # index in the training's corpora
    pair: P.Pair
    train: PairSplit
    valid: Split | None
    enc: object = None  # the encoded Arrow columns
    cached: bool = False


@dataclass
class Data:
    tokenizer: Tokenizer
    train: TrainBatches
    valid: list[ValidSet]
    dir: str  # where the corpus was read (several: "A + B,tag=bt")
    report: dict = field(default_factory=dict)  # per pair (and corpus): rows, what cleaning dropped, the cache...
    seconds: dict = field(default_factory=dict)  # reading, tokenizer training, encoding


def corpora_of(spec: Corpus | Path | str, d: DataConfig) -> tuple[list[CorpusSpec], list[Corpus]]:
    """The corpora a training reads: one, or several joined by " + " (mtx/specs.py)."""
    if isinstance(spec, Corpus):
        return [CorpusSpec(str(spec))], [spec]
    specs = parse_corpora(str(spec))
    return specs, [Corpus(c.path, d) for c in specs]


def prepare_data(
    cfg: Config,
    corpus: Corpus | Path | str,
    tok: Tokenizer | None = None,
    main: bool = True,
    from_main: Callable[[bytes | None], bytes] = lambda proto: proto,
) -> Data:
    """Read every corpus' train/valid of every pair, train the tokenizer (unless given, as on resume), encode (or
    find the encoding in the cache), clean, and hold out validation sets where no corpus has one. Under torchrun
    only the `main` process reads and encodes; `from_main` hands its tokenizer to the others (who wait for it),
    and they then find the encodings in the cache."""
    d = cfg.data
    specs, corpora = corpora_of(corpus, d)
    pairs = P.pairs_of(d)
    proto = tok.proto if tok is not None else None
    seconds: dict = {}
    if main:
        parts, proto = _read_and_encode(cfg, specs, corpora, pairs, proto, seconds)
    proto = from_main(proto)  # the other ranks wait here for rank 0's caches
    if not main:
        parts, _ = _read_and_encode(cfg, specs, corpora, pairs, proto, {})
    tok = Tokenizer(proto)
    cfg.model.vocab_size = len(tok)
    # a pair that no corpus has a validation split of: each corpus holds some of its pairs out
    hold = {p.pair for p in parts} - {p.pair for p in parts if p.valid is not None}
    srcs, tgts, rows, tags, sizes, sets, report = [], [], [], [], [], [], {}
    offset = 0
    for part in parts:
        spec, (s, t), split = specs[part.corpus], part.pair, part.train
        prefix = P.prefix_ids(tok, pairs, t) + ([tok.piece_id(corpus_tag(spec.tag))] if spec.tag else [])
        name = P.name((s, t)) + (f" of {spec.path}" if len(specs) > 1 else "")
        xs, ys = IdColumn.of(part.enc, "src_ids"), IdColumn.of(part.enc, "tgt_ids")
        keep, rep = clean(xs.lengths, ys.lengths, len(prefix), d, split, name if len(parts) > 1 else "")
        rep["cache"] = "hit" if part.cached else "written"
        valid = part.valid
        if (s, t) in hold:
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
        tags.append(np.tile(np.asarray(prefix + [PAD] * (2 - len(prefix)), np.int32), (len(kept), 1)))
        sizes.append(len(kept))
        if valid is not None:
            sets.append(_valid_set((s, t), valid, tok, prefix, cfg.model.max_len - 1, name))
        report[name] = rep
    groups = _groups(specs, parts, pairs, sizes, d.temperature)
    log.info(f"tokenizer: {len(tok)} pieces; {sum(sizes)} training pairs")
    tag_cols = np.concatenate(tags)
    tag_cols = tag_cols[:, : int((tag_cols != PAD).sum(1).max(initial=0))]  # no empty columns
    batches = TrainBatches(
        IdColumn.concat(srcs),
        IdColumn.concat(tgts),
        cfg.train.batch_tokens,
        cfg.train.seed,
        groups,
        rows=np.concatenate(rows),
        tags=tag_cols if tag_cols.shape[1] else None,
    )
    limit = cfg.model.max_len - 1 - (0 if tag_cols is None or not tag_cols.shape[1] else tag_cols.shape[1])
    splits = [p.train for p in parts]
    if d.subword_alpha > 0:
        batches.resample = Resegmenter(tok, splits, d.subword_alpha, d.subword_sides, cfg.train.seed, limit)
        log.info(f"subword regularisation: {d.subword_sides} sides resampled (alpha {d.subword_alpha:g})")
    if d.augment_upper or d.augment_title or d.augment_nopunct:
        texts = batches.resample or Resegmenter(tok, splits, d.subword_alpha, "", cfg.train.seed, limit)
        batches.augment = Augmenter(texts, d.augment_upper, d.augment_title, d.augment_nopunct, cfg.train.seed)
        log.info(f"augmentation: batches in capitals {d.augment_upper:g}, title case {d.augment_title:g}, "
                 f"without final punctuation {d.augment_nopunct:g}")  # fmt: skip
    return Data(tok, batches, sets, JOIN.join(str(c) for c in specs), report, seconds)


def corpus_tag(name: str) -> str:
    """The piece a tagged corpus' sources start with: `<bt>` for tag=bt."""
    return f"<{name}>"


def _groups(specs: list[CorpusSpec], parts: list[Part], pairs: list[P.Pair], sizes: list[int], temperature: float):
    """TrainBatches' groups, (first example, examples an epoch) of each part, or None for every example once an
    epoch: pairs mixed by temperature over their sizes (summed over the corpora), and each corpus' examples
    drawn `weight` times (0.5: half of them, 2: twice) on top."""
    per_pair = {p: sum(n for q, n in zip(parts, sizes, strict=True) if q.pair == p) for p in pairs}
    counts = dict(zip(pairs, P.epoch_counts(list(per_pair.values()), temperature), strict=True))
    if len(pairs) == 1:
        counts = per_pair
    wanted = [
        round(n * specs[q.corpus].weight * counts[q.pair] / per_pair[q.pair]) if n else 0
        for q, n in zip(parts, sizes, strict=True)
    ]
    if len(pairs) > 1:
        mix = ", ".join(f"{P.name(p)} {per_pair[p]} ({counts[p] / sum(counts.values()):.1%})" for p in pairs)
        log.info(f"pairs (training pairs, share of an epoch at temperature {temperature:g}): {mix}")
    if len(specs) > 1:
        mix = ", ".join(f"{specs[q.corpus]} {P.name(q.pair)} {n} x {w / max(n, 1):.2f}"
                        for q, n, w in zip(parts, sizes, wanted, strict=True))  # fmt: skip
        log.info(f"corpora (training pairs x draws an epoch): {mix}")
    if wanted == sizes:
        return None
    starts = np.cumsum([0, *sizes[:-1]]).tolist()
    return list(zip(starts, wanted, strict=True))


def _read_and_encode(
    cfg: Config, specs: list[CorpusSpec], corpora: list[Corpus], pairs: list[P.Pair], proto: bytes | None,
    seconds: dict,
) -> tuple[list[Part], bytes]:  # fmt: skip
    """Every corpus' every pair, encoded (or found in the cache); and the tokenizer's bytes (trained here when
    `proto` is None, or found in the cache: the same data and settings train the same tokenizer). `seconds` gets
    the time of each stage."""
    d = cfg.data
    t0 = time.time()
    parts: list[Part] = []
    for i, corpus in enumerate(corpora):
        with spinner(f"reading {corpus}"):
            for s, t in pairs:
                split = corpus.split("train", s, t)
                if split is None:
                    names = " or ".join(repr(x) for x in dict.fromkeys((d.train_split, "train")))
                    raise MtxError(f"{corpus}: no training split (expected {names})")
                v = corpus.split("valid", s, t)
                valid = None if v is None else _texts(v.ds, v.name)
                if v is not None and not valid.src:
                    raise MtxError(f"{v.origin}: the validation split has no pair without an empty side")
                parts.append(Part(i, (s, t), split, valid))
    seconds["read_s"] = time.time() - t0

    def loaded() -> float:
        return sum(p.train.load_s for p in parts)

    where = JOIN.join(str(c) for c in corpora)
    log.info(f"checked {where} ({seconds['read_s']:.1f}s)")
    t0 = time.time()
    if proto is None:
        symbols = tuple(P.tag(t) for t in P.targets(pairs)) if P.tagged(pairs) else ()
        symbols += tuple(dict.fromkeys(corpus_tag(c.tag) for c in specs if c.tag))
        vocab, kind, coverage = cfg.model.vocab_size, d.spm_model_type, d.spm_character_coverage
        keys = [p.train.key for p in parts]
        cases = (d.augment_upper, d.augment_title)
        settings = (vocab, kind, coverage, symbols, d.spm_sample_sentences, cfg.train.seed, keys)
        settings += (cases,) if any(cases) else ()
        path = tokenizer_cache(repr(settings))
        if path.is_file():
            proto = path.read_bytes()
            log.info(f"tokenizer from the cache ({path})")
        else:
            with spinner("training the tokenizer"):
                sample = tokenizer_sample(pairs, [p.train for p in parts], d.spm_sample_sentences, cfg.train.seed)
                sample = with_case_copies(sample, *cases, cfg.train.seed)
                proto = Tokenizer.train(sample, vocab, kind, coverage, symbols=symbols).proto
            for p in parts:
                p.train.release()
            atomic_write(path, proto)
            log.info(
                f"trained the tokenizer on a sample of {d.spm_sample_sentences} sentences ({time.time() - t0:.1f}s)"
            )
    else:
        check_tags(Tokenizer(proto), pairs, specs)
    seconds["tokenizer_s"] = time.time() - t0 - loaded()  # the builders' reading counts in read_s
    t0, before = time.time(), loaded()
    for p in parts:
        p.enc, p.cached = encode_split(p.train, proto, d.max_tokens, d.num_proc)
    hits = sum(p.cached for p in parts)
    how = "from the cache" if hits == len(parts) else f"{len(parts) - hits} of {len(parts)} splits encoded"
    seconds["encode_s"] = time.time() - t0 - (loaded() - before)
    seconds["read_s"] += loaded()
    log.info(f"encoded training pairs {how} ({seconds['encode_s']:.1f}s)")
    return parts, proto


def check_tags(tok: Tokenizer, pairs: list[P.Pair], specs: list[CorpusSpec]) -> None:
    """A given tokenizer (a resumed or fine-tuned model's) has a piece for every tag the training needs."""
    need = [P.tag(t) for t in P.targets(pairs)] if P.tagged(pairs) else []
    need += [corpus_tag(c.tag) for c in specs if c.tag]
    missing = [x for x in dict.fromkeys(need) if not tok.has_piece(x)]
    if missing:
        raise UsageError(f"the model's tokenizer has no {', '.join(missing)} (tags must be in the tokenizer it was "
                         "trained with: train a new model, or leave the tag out)")  # fmt: skip


def tokenizer_sample(pairs: list[P.Pair], train: list[PairSplit], limit: int, seed: int) -> Iterator[str]:
    """A seeded random sample of at most `limit` training sentences, streamed. One pair: the same rows of both
    sides, of each corpus in proportion to its size. Several: every language (from the first pair that has it),
    each the same number of sentences, so that each has the same say in the vocabulary."""
    rng = np.random.default_rng(seed)
    if len(pairs) == 1:  # the same share of every corpus
        total = sum(len(split) for split in train)
        for split in train:
            idx = _sample(rng, len(split), round(limit // 2 * len(split) / total))
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


def _valid_set(pair: P.Pair, split: Split, tok: Tokenizer, prefix: list[int], limit: int, name: str) -> ValidSet:
    vs = [(prefix + x)[:limit] for x in tok.encode(split.src)]
    vt = [x[:limit] for x in tok.encode(split.tgt)]
    return ValidSet(pair, split, vs, vt, prefix, name)
