"""Language pairs of one model: which it was trained on, the target-language tags, the sampling shares.

A model with more than one target language reads a tag `<2xx>` before the source sentence, naming the language
to translate into (Johnson et al., 2017); a model with one target reads no tag, as single-pair models always did.
Pairs mix in training by temperature sampling over their sizes: pair i is drawn with probability proportional to
n_i ** (1 / T) (T = 1: as the data has them; larger T: closer to even).
"""

from __future__ import annotations

from collections.abc import Callable

from mtx.config import DataConfig
from mtx.errors import UsageError
from mtx.specs import Pair, parse_pairs

Warn = Callable[[str], None]


def pairs_of(d: DataConfig) -> list[Pair]:
    """The pairs a config trains: `data.pairs`, else the one pair `data.src`-`data.tgt`."""
    return parse_pairs(d.pairs) if d.pairs else [(d.src, d.tgt)]


def name(pair: Pair) -> str:
    return f"{pair[0]}-{pair[1]}"


def targets(pairs: list[Pair]) -> list[str]:
    return sorted({t for _, t in pairs})


def languages(pairs: list[Pair]) -> list[str]:
    """Every language of the pairs, in the order they first appear."""
    return list(dict.fromkeys(lang for p in pairs for lang in p))


NAMES = {  # languages' names in English (the server's /languages, Argos packages)
    "ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish", "fr": "French",
    "it": "Italian", "ja": "Japanese", "nl": "Dutch", "pl": "Polish", "pt": "Portuguese", "ru": "Russian",
    "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese",
}  # fmt: skip


def tag(lang: str) -> str:
    return f"<2{lang}>"


def tagged(pairs: list[Pair]) -> bool:
    """Whether sources carry a target-language tag: only when the model has more than one target."""
    return len(targets(pairs)) > 1


def prefix_ids(tokenizer, pairs: list[Pair], tgt: str) -> list[int]:
    """The ids a source sentence starts with when translating into `tgt`: its tag, on a model with tags."""
    return [tokenizer.piece_id(tag(tgt))] if tagged(pairs) else []


def shares(sizes: list[int], temperature: float) -> list[float]:
    """The probability of drawing each pair: n_i ** (1 / T), normalised."""
    w = [n ** (1.0 / temperature) for n in sizes]
    return [x / sum(w) for x in w]


def epoch_counts(sizes: list[int], temperature: float) -> list[int]:
    """Examples of each pair in one epoch of sum(sizes) examples, by the temperature shares."""
    total = sum(sizes)
    return [round(q * total) for q in shares(sizes, temperature)]


def choose(trained: list[Pair], to: str | None, pair: str | None, warn: Warn) -> tuple[str | None, str]:
    """The direction a command asks of a model trained on `trained`: `--pair S-T` or `--to T` or, for a model with
    one target, that target (see `direction`). Returns (source, target), the source None when only `--to` was
    given and several sources translate into it."""
    if pair is not None:
        try:
            ((src, tgt),) = parse_pairs(pair)
        except ValueError as e:
            raise UsageError(f"--pair {pair}: {e}") from None
        if to is not None and to != tgt:
            raise UsageError(f"--pair {pair} and --to {to} name different targets")
        return direction(trained, src, tgt, f"--pair {pair}", warn)
    if to is None:
        if len(targets(trained)) > 1:
            raise UsageError(f"this model translates into {', '.join(targets(trained))}: choose one with --to")
        to = trained[0][1]
    return direction(trained, None, to, f"--to {to}", warn)


def direction(trained: list[Pair], src: str | None, tgt: str, asked: str, warn: Warn) -> tuple[str | None, str]:
    """(src, tgt) checked against the pairs a model was trained on; without `src`, the one language that translates
    into `tgt` (None when there are several). A language the model never saw, or a target it never learnt, is a
    UsageError naming what was `asked` and the model's pairs; an untrained direction between known languages is
    zero-shot, and `warn` is told."""
    have = ", ".join(name(p) for p in trained)
    if tgt not in targets(trained) or (src is not None and (src not in languages(trained) or src == tgt)):
        raise UsageError(f"{asked}: the model's pairs are {have}")
    if src is None:
        sources = {s for s, t in trained if t == tgt}
        return (sources.pop() if len(sources) == 1 else None), tgt
    if (src, tgt) not in trained:
        warn(f"warning: {src}-{tgt} is zero-shot (the model was trained on {have})")
    return src, tgt
