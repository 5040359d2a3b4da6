"""Training data: read every pair's train and valid splits, train the tokenizer, encode, filter, batch.

One pair (`--src de --tgt en`) works as it always did: the tokenizer trained on the pair's train lines, no tags.
Several (`--pairs de-en,en-de`): a joint tokenizer over an even sample of every language's train lines, with a
target-language tag `<2xx>` before each source when there is more than one target (mtx/pairs.py), and an epoch
that mixes the pairs by temperature sampling.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mtx import pairs as P
from mtx.batching import TrainBatches
from mtx.config import Config
from mtx.console import spinner
from mtx.corpus import Split, load_split
from mtx.distributed import World
from mtx.tokenizer import Tokenizer


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
    dir: Path  # where the corpus was read


def prepare_data(
    cfg: Config, data_dir: Path, log: Callable[[str], None], tok: Tokenizer | None = None, world: World | None = None
) -> Data:
    """Read and validate every pair's train/valid (all of them before any training), train the tokenizer (unless
    given, as on resume; under torchrun rank 0 trains it and the others receive it), encode, filter."""
    d, world = cfg.data, world or World()
    pairs = P.pairs_of(d)
    with spinner(f"reading {data_dir}", world.main):
        train = [load_split(data_dir, d.train_split, s, t) for s, t in pairs]
        valid = [load_split(data_dir, d.valid_split, s, t) for s, t in pairs]
    t0 = time.time()
    if tok is None:
        proto = None
        if world.main:
            with spinner("training the tokenizer"):
                symbols = tuple(P.tag(t) for t in P.targets(pairs)) if P.tagged(pairs) else ()
                texts = _tokenizer_sample(pairs, train, cfg.train.seed)
                vocab, kind, coverage = cfg.model.vocab_size, d.spm_model_type, d.spm_character_coverage
                proto = Tokenizer.train(texts, vocab, kind, coverage, symbols=symbols).proto
        tok = Tokenizer(world.from_main(proto))
        cfg.model.vocab_size = len(tok)
    src: list[list[int]] = []
    tgt: list[list[int]] = []
    starts, sizes = [], []
    with spinner("encoding", world.main):
        for (s, t), split in zip(pairs, train, strict=True):
            prefix = P.prefix_ids(tok, pairs, t)
            xs, ys = [prefix + x for x in tok.encode(split.src)], tok.encode(split.tgt)
            keep = [i for i in range(len(xs)) if len(xs[i]) < d.max_tokens and len(ys[i]) < d.max_tokens]
            if len(keep) < len(xs):
                what = f"{len(xs) - len(keep)} of {len(xs)} training pairs" + (f" of {s}-{t}" if len(pairs) > 1 else "")
                log(f"filtered {what} longer than {d.max_tokens} pieces")
            starts.append(len(src))
            sizes.append(len(keep))
            src += [xs[i] for i in keep]
            tgt += [ys[i] for i in keep]
    groups = None
    if len(pairs) > 1:
        counts = P.epoch_counts(sizes, d.temperature)
        groups = list(zip(starts, counts, strict=True)) if counts != sizes else None
        mix = ", ".join(
            f"{P.name(p)} {n} ({c / sum(counts):.1%})" for p, n, c in zip(pairs, sizes, counts, strict=True)
        )
        log(f"pairs (training pairs, share of an epoch at temperature {d.temperature:g}): {mix}")
    log(f"tokenizer: {len(tok)} pieces ({time.time() - t0:.1f}s); {len(src)} training pairs")
    limit = cfg.model.max_len - 1
    sets = []
    for (s, t), split in zip(pairs, valid, strict=True):
        prefix = P.prefix_ids(tok, pairs, t)
        vs = [(prefix + x)[:limit] for x in tok.encode(split.src)]
        vt = [x[:limit] for x in tok.encode(split.tgt)]
        sets.append(ValidSet((s, t), split, vs, vt, prefix))
    batches = TrainBatches(src, tgt, cfg.train.batch_tokens, cfg.train.seed, groups)
    return Data(tok, batches, sets, data_dir)


def _tokenizer_sample(pairs: list[P.Pair], train: list[Split], seed: int) -> list[str]:
    """One pair: its source and target lines. Several: every language's lines (from the first pair that has the
    language), each language sampled down to the smallest, so that each has the same say in the vocabulary."""
    if len(pairs) == 1:
        return train[0].src + train[0].tgt
    by_lang: dict[str, list[str]] = {}
    for (s, t), split in zip(pairs, train, strict=True):
        by_lang.setdefault(s, split.src)
        by_lang.setdefault(t, split.tgt)
    k = min(len(lines) for lines in by_lang.values())
    rng = random.Random(seed)
    return [x for lang in P.languages(pairs) for x in rng.sample(by_lang[lang], k)]
