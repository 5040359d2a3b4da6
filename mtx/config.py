"""Typed configuration: one dataclass per concern, one `Config` holding them.

The config is saved as JSON inside every checkpoint, so a checkpoint alone rebuilds the model. Files (TOML or
JSON) and dotted overrides (`model.d_model=256`) are merged onto the defaults (or a preset: mtx/train/presets.py);
unknown keys are an error. Each key is declared once, by `key()`: its default, the rules its value must meet, the
command-line option that sets it and whether a resumed training may change it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtx.errors import UsageError
from mtx.specs import parse_corpora, parse_pairs, parse_sample

Rule = tuple[str, Callable[[Any, "Config"], bool]]  # (what the value must be, check(value, whole config))


def key(default: Any, *rules: Rule, flag: str = "", resume: bool | None = None) -> Any:
    """A config key: its default, its rules (checked in order), the command-line option that sets it (named in its
    errors) and whether a resumed training may change it (None: model and data keys may not, the others may)."""
    return field(default=default, metadata={"rules": rules, "flag": flag, "resume": resume})


def _in(*choices) -> Rule:
    return f"expected {', '.join(choices[:-1])} or {choices[-1]}", lambda v, c: v in choices


def _between(lo, hi, lo_open=False, hi_open=False) -> Callable[[Any, Any], bool]:
    return lambda v, c: (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)


POS: Rule = ("must be > 0", lambda v, c: v > 0)
NONNEG: Rule = ("must be >= 0", lambda v, c: v >= 0)
PROB: Rule = ("must be in [0, 1)", _between(0, 1, hi_open=True))
SHARE: Rule = ("must be in [0, 1]", _between(0, 1))


def at_least(n: int) -> Rule:
    return f"must be >= {n}", lambda v, c: v >= n


def at_most(n: int) -> Rule:
    return f"must be <= {n:,}", lambda v, c: v <= n


def is_name(text: str) -> bool:
    """A split's name (letters, digits, . _ -), never a path: files it names stay in their directory."""
    return bool(re.fullmatch(r"\w[\w.-]*", text)) and ".." not in text


NAME: Rule = ("must be a split's name (letters, digits, . _ -), not a path", lambda v, c: is_name(v))


def _parses(parse):
    """A rule's check: the text is empty or `parse` accepts it (a ValueError: it does not)."""

    def ok(text: str, c) -> bool:
        try:
            return not text or bool(parse(text))
        except ValueError:
            return False

    return ok


@dataclass
class ModelConfig:
    # transformer | rnn (a bidirectional GRU/LSTM encoder and an attentional decoder: mtx/models/rnn.py; it reads
    # vocab_size, d_model, enc_layers, dec_layers, dropout, tie_embeddings, max_len and rnn_cell)
    arch: str = key("transformer", _in("transformer", "rnn"))
    rnn_cell: str = key("gru", _in("gru", "lstm"))
    vocab_size: int = key(8000, at_least(8), at_most(1_000_000))
    d_model: int = key(
        256,
        ("must be even for model.arch=rnn (each encoder direction has d_model / 2 units)",
         lambda v, c: c.model.arch != "rnn" or v % 2 == 0),
        POS,
        at_most(16_384),
        ("must be a multiple of model.n_heads", lambda v, c: c.model.n_heads <= 0 or v % c.model.n_heads == 0),
    )  # fmt: skip
    n_heads: int = key(4, POS)
    enc_layers: int = key(4, POS, at_most(256))
    dec_layers: int = key(3, POS, at_most(256))
    d_ff: int = key(1024, POS, at_most(131_072))
    dropout: float = key(0.1, PROB)
    attn_dropout: float = key(0.0, PROB)
    act_dropout: float = key(0.0, PROB)  # inside the feed-forward block
    pre_norm: bool = key(True)
    tie_embeddings: bool = key(True)  # source, target and output embeddings share one matrix
    max_len: int = key(256, at_least(2), at_most(65_536))  # positions the model can encode; longer inputs are truncated


LANG: Rule = ("must be a language code", lambda v, c: bool(v.strip()))


@dataclass
class DataConfig:
    # The corpus (what --data names): a directory of {split}.{lang} files, a TSV/CSV/JSONL/Parquet file or a
    # directory of {split}.{ext} such files, a save_to_disk directory, or hf:NAME[:CONFIG] (mtx/data/sources.py).
    # Several: `A + B,weight=0.5,tag=bt` (mtx/specs.py; each --data one). Empty: $MTX_DATA, else Multi30k.
    path: str = key(
        "",
        (
            "expected PATH[,weight=W][,tag=NAME] [+ PATH...]: W > 0, NAME of letters, digits or _, each path once",
            _parses(parse_corpora),
        ),
    )
    # a table's source and target columns, e.g. de,en (1,2: a TSV/CSV without a header)
    columns: str = key("", ("expected two columns, SRC_COL,TGT_COL", lambda v, c: not v or len(v.split(",")) == 2))
    src: str = key("de", LANG, flag="--src")
    tgt: str = key("en", LANG, flag="--tgt")
    train_split: str = key("train", NAME)
    valid_split: str = key("val", NAME)
    test_split: str = key("test_2016_flickr", NAME, resume=True)  # what `mtx evaluate` decodes unless --split says
    # Several directions in one model (--pairs de-en,en-de,...): then src and tgt are not read (mtx/data/pairs.py)
    pairs: str = key("", ("expected SRC-TGT[,SRC-TGT...], e.g. de-en,en-de", _parses(parse_pairs)), flag="--pairs")
    temperature: float = key(5.0, POS)  # pair i sampled in proportion to n_i ** (1 / temperature)
    # training pairs with a longer side (in pieces) are dropped, with a count; <= max_len
    max_tokens: int = key(
        128,
        POS,
        ("must be <= model.max_len (longer pairs could not be encoded)", lambda v, c: v <= c.model.max_len),
    )
    # ... and pairs whose longer side has more pieces than this times the shorter
    max_length_ratio: float = key(3.0, ("must be >= 1 (0: no ratio rule)", lambda v, c: v == 0 or v >= 1))
    strict: bool = key(False)  # an empty line is an error (else the pair is dropped, the first few named in the log)
    valid_size: int = key(1000, POS)  # pairs held out of train (seeded) when the corpus has no validation split
    # The tokenizer's training sample (seeded, streamed): 500k sentences ~9 s, 0.7 GB; 1M ~16 s (docs/data.md)
    spm_sample_sentences: int = key(500_000, at_least(1000))
    num_proc: int = key(2, POS, resume=True)  # processes that encode a large split (Dataset.map num_proc)
    # Subword regularisation (mtx/data/resegment.py): training sentences segmented anew at each batch, sampled
    # with sentencepiece's smoothing alpha (unigram; BPE: dropout probability); 0: off. Which sides: src, tgt, both
    subword_alpha: float = key(0.0, ("must be in [0, 1]", _between(0, 1)))
    subword_sides: str = key("src", _in("src", "tgt", "both"))
    # Augmentation (mtx/data/augment.py): shares of batches in capitals, in title case, without final punctuation
    augment_upper: float = key(0.0, SHARE, ("augment_upper + augment_title must be <= 1",
                                           lambda v, c: v + c.data.augment_title <= 1))  # fmt: skip
    augment_title: float = key(0.0, SHARE)
    augment_nopunct: float = key(0.0, SHARE)
    # A model directory whose tokenizer to use instead of training one (models of one tokenizer can be ensembled)
    tokenizer: str = key("", flag="--tokenizer")
    spm_model_type: str = key("unigram", _in("unigram", "bpe", "char", "word"))
    spm_character_coverage: float = key(1.0, ("must be in (0, 1]", _between(0, 1, lo_open=True)))
    # The vocabulary shortlist (mtx/data/shortlist.py): k companions per source piece + n frequent; k = 0: none
    shortlist_k: int = key(100, NONNEG)
    shortlist_n: int = key(100, NONNEG)


@dataclass
class TrainConfig:
    seed: int = key(1, NONNEG, resume=False)
    # A model to fine-tune: its weights, tokenizer, model.*; a fresh optimizer (mtx/train/presets.py); "": none
    init: str = key("", flag="--init", resume=False)
    batch_tokens: int = key(2500, POS, resume=False)  # sentences x max(padded src len, padded tgt len) per batch
    accum: int = key(1, at_least(1), flag="--accum")  # batches per update on each process (gradient accumulation)
    lr: float = key(1.5e-3, POS)
    warmup_steps: int = key(250, NONNEG)
    # cosine | linear | constant | inv_sqrt: decay over the time budget or max_steps, else max_epochs (budget.py)
    schedule: str = key("cosine", _in("cosine", "inv_sqrt", "linear", "constant"))
    min_lr_ratio: float = key(0.02, ("must be in [0, 1]", _between(0, 1)))
    weight_decay: float = key(0.01, NONNEG)
    # Weight decay on 1-D tensors (biases, norm gains) too; False: on matrices only (measured: docs/results.md)
    decay_1d: bool = key(True)
    betas: tuple[float, float] = key((0.9, 0.98), ("each must be in [0, 1)", lambda v, c: all(0 <= b < 1 for b in v)))
    label_smoothing: float = key(0.1, PROB)
    # Token dropout: the probability that a training source / decoder-input piece is replaced by UNK (0: off)
    src_token_dropout: float = key(0.0, PROB)
    tgt_token_dropout: float = key(0.0, PROB)
    # R-Drop (Wu et al., 2021): two passes (two dropout masks), mean CE + this weight x their symmetric KL; 0: off
    rdrop: float = key(0.0, NONNEG)
    clip_norm: float = key(1.0, NONNEG)
    max_steps: int = key(0, NONNEG)  # 0: no step limit (the time budget or max_epochs stops training)
    max_epochs: int = key(100, at_least(1))
    time_budget_min: float = key(0.0, NONNEG, flag="--time-budget")  # 0: no time limit
    eval_every: int = key(500, POS)  # steps between validations
    # validation sentences decoded (greedy) for BLEU at each eval; -1: all; 0: loss only
    eval_bleu_sents: int = key(-1, ("must be >= -1 (-1: all)", lambda v, c: v >= -1))
    keep_best: bool = key(True)
    # Average the weights of `average` snapshots over the last `average_frac` of training plus the final weights;
    # the average replaces the best checkpoint when it scores better on validation. 0: off.
    average: int = key(0, NONNEG)
    average_frac: float = key(0.2, ("must be in (0, 1]", _between(0, 1, lo_open=True)))
    device: str = key("auto", _in("auto", "cpu", "cuda"), flag="--device")
    amp: str = key("auto", _in("auto", "bf16", "fp32"))  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    # torch.compile the training forward/backward (dynamic shapes: one graph for all batches)
    compile: bool = key(False)
    threads: int = key(0, NONNEG, at_most(1024))  # CPU threads (0: torch's default)
    log_every: int = key(50, POS)
    save_every: int = key(500, NONNEG)  # steps between resumable training states (0: only at the end or when stopped)
    keep_last: int = key(2, at_least(1))  # resumable states kept
    max_nonfinite: int = key(20, at_least(1))  # non-finite losses in a row (updates skipped) that stop training
    # also write the log as TensorBoard events in MODEL/tensorboard (needs tensorboard)
    tensorboard: bool = key(False)


@dataclass(frozen=True)
class DecodeConfig:  # frozen and hashable: one request's decoding options, never merged with another's
    beam: int = key(5, at_least(1), flag="--beam")
    alpha: float = key(1.0, ("expected a length penalty between 0 and 10", _between(0, 10)), flag="--alpha")  # GNMT
    max_len_a: float = key(1.5, NONNEG)
    max_len_b: int = key(10, NONNEG, ("max_len_a + max_len_b must be >= 1", lambda v, c: c.decode.max_len_a + v >= 1))
    # rows (sentences x beams) x source length per batch; 0: 12000 on CPU, 100000 on CUDA
    batch_tokens: int = key(0, NONNEG, flag="--batch-tokens")
    # candidates returned: the best of the beam's finished hypotheses, or samples drawn (with decode.sample)
    nbest: int = key(1, ("must be between 1 and decode.beam", lambda v, c: v >= 1 and (v <= c.decode.beam
                                                                                      or bool(c.decode.sample))),
                     flag="--nbest")  # fmt: skip
    # Sample instead of searching: topk=K (from the K most likely tokens; 0: all) or topp=P (the fewest tokens
    # whose probabilities reach P); "": beam search (or greedy)
    sample: str = key(
        "", ("expected topk=K or topp=P, e.g. topk=10 or topp=0.9", _parses(parse_sample)), flag="--sample"
    )
    temperature: float = key(1.0, POS, flag="--temperature")  # sampling: logits divided by it
    seed: int = key(0, NONNEG, flag="--seed")  # sampling: the same input, settings and seed draw the same samples
    # fp32 (on the CPU oneDNN's) | int8 (CPU) | bf16 | fp16 autocast: mtx/models/packed.py, docs/performance.md
    precision: str = key("fp32", _in("fp32", "bf16", "fp16", "int8"), flag="--precision")
    shortlist: bool = key(False, flag="--shortlist")  # score only the batch's shortlist (MODEL/shortlist.txt)
    # current | exact: when beam search drops a sentence (mtx/decode/search.py, docs/deploy.md)
    stop: str = key("current", _in("current", "exact"))
    # Against runaway repetitions (mtx/decode/repetition.py; CTranslate2's options): no n-gram of this many pieces
    # twice (0: off; 4 chosen on val: docs/recipes.md); the CTRL penalty on tokens already output (1: off)
    no_repeat_ngram: int = key(4, NONNEG, at_most(64), flag="--no-repeat-ngram")
    repetition_penalty: float = key(1.0, POS, at_most(100), flag="--repetition-penalty")


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "decode": DecodeConfig}
# Keys that older checkpoints hold and this mtx ignores (special ids are fixed by the tokenizer).
RETIRED = {"model.pad_id", "model.bos_id", "model.eos_id"}


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> Config:
        """A saved config (checkpoint, training state): keys this mtx no longer has are dropped; then validated."""
        if not isinstance(d, dict) or not all(isinstance(vals, dict) for vals in d.values()):
            raise UsageError(f"{source}: the config must be a table of tables (model, data, train, decode)")
        d = {sec: {k: v for k, v in vals.items() if f"{sec}.{k}" not in RETIRED} for sec, vals in d.items()}
        cfg = cls()
        merge(cfg, d, source)
        cfg.validate(source)
        return cfg

    def keys(self) -> list[tuple[str, Any, dataclasses.Field]]:
        """Every key as (`section.name`, value, its field)."""
        return [
            (f"{name}.{f.name}", getattr(getattr(self, name), f.name), f)
            for name, section in SECTIONS.items()
            for f in dataclasses.fields(section)
        ]

    def validate(self, source: str = "config") -> Config:
        """Types, then each key's rules, before any data is read; the first violation is a UsageError naming the
        key (and its command-line option, where it has one) and the value."""
        for name, value, f in self.keys():
            want = type(f.default)
            ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                _fail(source, name, value, f"expected a {want.__name__}", f)
            if any(isinstance(x, float) and not math.isfinite(x) for x in (value if want is tuple else (value,))):
                _fail(source, name, value, "must be a finite number", f)
        for name, value, f in self.keys():
            for rule, check in f.metadata["rules"]:
                if not check(value, self):
                    _fail(source, name, value, rule, f)
        return self


def _fail(source: str, key: str, value: Any, rule: str, f: dataclasses.Field) -> None:
    flag = f" ({f.metadata['flag']})" if f.metadata["flag"] else ""
    raise UsageError(f"{source + ': ' if source else ''}{key}={value!r}{flag}: {rule}")


def _coerce(value: Any, current: Any, key: str, source: str) -> Any:
    """Convert `value` to the type of the field's current value."""
    try:
        if isinstance(current, bool):
            if isinstance(value, str):
                low = value.lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return low in ("true", "1", "yes")
            return bool(value)
        if isinstance(current, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(current, float):
            return float(value)
        if isinstance(current, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(type(c)(v) for c, v in zip(current, items, strict=True))
        return str(value)
    except (ValueError, TypeError):
        raise UsageError(f"{source}: {key}={value!r} is not a valid {type(current).__name__}") from None


def merge(cfg: Config, d: dict[str, Any], source: str) -> None:
    """Merge a nested dict onto `cfg`; unknown sections or keys raise UsageError."""
    for section, values in d.items():
        sub = getattr(cfg, section, None)
        if sub is None or not dataclasses.is_dataclass(sub):
            raise UsageError(f"{source}: unknown config section '{section}'")
        if not isinstance(values, dict):
            raise UsageError(f"{source}: section '{section}' must be a table")
        for key, value in values.items():
            if not hasattr(sub, key):
                raise UsageError(f"{source}: unknown config key '{section}.{key}'")
            value = _coerce(value, getattr(sub, key), f"{section}.{key}", source)
            if sub.__dataclass_params__.frozen:  # a frozen section is replaced, not changed
                setattr(cfg, section, sub := dataclasses.replace(sub, **{key: value}))
            else:
                setattr(sub, key, value)


def load_file(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a nested dict."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{path}: invalid config ({e})") from None


def parse_override(item: str) -> dict[str, Any]:
    """`model.d_model=256` -> {"model": {"d_model": "256"}}."""
    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise UsageError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. model.d_model=256")
    return {parts[0]: {parts[1]: value.strip()}}


def overrides(items: list[str] | None, options: dict[str, Any]) -> list[str]:
    """The `--set` items, then the command-line options that were given, as `section.key=value` items."""
    return [*(items or []), *(f"{k}={v}" for k, v in options.items() if v is not None)]


def build_config(file: Path | None = None, overrides: list[str] | None = None, base: Config | None = None) -> Config:
    """`base` (or the defaults), then the file, then the `--set` overrides; validated."""
    cfg = base or Config()
    if file is not None:
        merge(cfg, load_file(file), str(file))
        cfg.validate(str(file))
    for item in overrides or []:
        merge(cfg, parse_override(item), "--set")
    return cfg.validate("")


def resumed_config(saved: dict[str, Any], file: Path | None, overrides: list[str], source: str) -> Config:
    """A resumed training's config: the saved one (a training state's), then the file and the overrides; a change
    that cannot work on resume is a UsageError."""
    old = Config.from_dict(saved, source)
    new = build_config(file, overrides, base=copy.deepcopy(old))
    check_resume(old, new, "--resume")
    return new


def frozen_on_resume(name: str, f: dataclasses.Field) -> bool:
    """What a resumed training may not change: the weights and the tokenizer are built from model.* and data.* (but
    how fast the data are encoded and what `mtx evaluate` decodes), and the saved data position
    indexes the epoch plan made from the seed and the batch size. Everything else (the time budget, steps,
    intervals, lr, schedule, optimizer settings) takes effect on resume."""
    rule = f.metadata["resume"]
    return name.startswith(("model.", "data.")) if rule is None else not rule


def check_resume(saved: Config, new: Config, source: str) -> None:
    """Refuse a resumed training whose settings differ from the saved ones where that cannot work."""
    for (name, old, f), (_, now, _) in zip(saved.keys(), new.keys(), strict=True):
        if frozen_on_resume(name, f) and now != old:
            raise UsageError(
                f"{source}: {name} is {old!r} in the saved training and {now!r} now; a resumed training "
                f"keeps its model, data and batching settings (train a new model with another --out)"
            )
