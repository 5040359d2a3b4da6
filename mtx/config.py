"""Typed configuration: one dataclass per concern, one `Config` holding them.

The config is saved as JSON inside every checkpoint, so a checkpoint alone rebuilds the model.
Files (TOML or JSON) and dotted overrides (`model.d_model=256`) are merged onto the defaults;
unknown keys are an error.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtx.errors import UsageError


@dataclass
class ModelConfig:
    # transformer | rnn (a bidirectional GRU/LSTM encoder and an attentional decoder: mtx/rnn.py; it reads
    # vocab_size, d_model, enc_layers, dec_layers, dropout, tie_embeddings, max_len and rnn_cell)
    arch: str = "transformer"
    rnn_cell: str = "gru"  # gru | lstm
    vocab_size: int = 8000
    d_model: int = 256
    n_heads: int = 4
    enc_layers: int = 4
    dec_layers: int = 3
    d_ff: int = 1024
    dropout: float = 0.1
    attn_dropout: float = 0.0
    act_dropout: float = 0.0  # inside the feed-forward block
    pre_norm: bool = True
    tie_embeddings: bool = True  # source, target and output embeddings share one matrix
    max_len: int = 256  # positions the model can encode; longer inputs are truncated


@dataclass
class DataConfig:
    # The corpus (what --data names): a directory of {split}.{lang} files, a TSV/CSV/JSONL/Parquet file or a
    # directory of {split}.{ext} such files, a save_to_disk directory, or hf:NAME[:CONFIG] (mtx/sources.py).
    # Empty: $MTX_DATA, else Multi30k.
    path: str = ""
    columns: str = ""  # a table's source and target columns, e.g. de,en (1,2: a TSV/CSV without a header)
    src: str = "de"
    tgt: str = "en"
    train_split: str = "train"
    valid_split: str = "val"
    test_split: str = "test_2016_flickr"  # what `mtx evaluate` decodes unless --split says otherwise
    # Several directions in one model (--pairs de-en,en-de,...): then src and tgt are not read (mtx/pairs.py)
    pairs: str = ""
    temperature: float = 5.0  # pair i sampled in proportion to n_i ** (1 / temperature)
    max_tokens: int = 128  # training pairs with a longer side (in pieces) are dropped, with a count; <= max_len
    max_length_ratio: float = 3.0  # ... and pairs whose longer side has more pieces than this times the shorter
    strict: bool = False  # an empty line is an error (else the pair is dropped, and the first few named in the log)
    valid_size: int = 1000  # pairs held out of train (seeded) when the corpus has no validation split
    # The tokenizer's training sample (seeded, streamed from train): 500k sentences train in ~9 s and 0.7 GB, 1M in
    # ~16 s and 1.4 GB (docs/data.md)
    spm_sample_sentences: int = 500_000
    num_proc: int = 2  # processes that encode a large split (Dataset.map num_proc)
    spm_model_type: str = "unigram"
    spm_character_coverage: float = 1.0


@dataclass
class TrainConfig:
    seed: int = 1
    batch_tokens: int = 2500  # sentences x max(padded src len, padded tgt len) per batch
    accum: int = 1  # batches per update on each process (gradient accumulation)
    lr: float = 1.5e-3
    warmup_steps: int = 250
    # cosine | linear | constant | inv_sqrt: decay over the time budget or max_steps, else max_epochs (mtx/budget.py)
    schedule: str = "cosine"
    min_lr_ratio: float = 0.02
    weight_decay: float = 0.01
    # Weight decay on 1-D tensors (biases, norm gains) too; False: on matrices only (measured: docs/results.md)
    decay_1d: bool = True
    betas: tuple[float, float] = (0.9, 0.98)
    label_smoothing: float = 0.1
    # Token dropout: the probability that a training source / decoder-input piece is replaced by UNK (0: off)
    src_token_dropout: float = 0.0
    tgt_token_dropout: float = 0.0
    clip_norm: float = 1.0
    max_steps: int = 0  # 0: no step limit (the time budget or max_epochs stops training)
    max_epochs: int = 100
    time_budget_min: float = 0.0  # 0: no time limit
    eval_every: int = 500  # steps between validations
    eval_bleu_sents: int = -1  # validation sentences decoded (greedy) for BLEU at each eval; -1: all; 0: loss only
    keep_best: bool = True
    # Average the weights of `average` snapshots over the last `average_frac` of training plus the final weights;
    # the average replaces the best checkpoint when it scores better on validation. 0: off.
    average: int = 0
    average_frac: float = 0.2
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    compile: bool = False  # torch.compile the training forward/backward (dynamic shapes: one graph for all batches)
    threads: int = 0  # CPU threads (0: torch's default)
    log_every: int = 50
    save_every: int = 500  # steps between resumable training states (0: only at the end or when stopped)
    keep_last: int = 2  # resumable states kept
    max_nonfinite: int = 20  # non-finite losses in a row (updates skipped) that stop training
    tensorboard: bool = False  # also write the log as TensorBoard events in MODEL/tensorboard (needs tensorboard)


@dataclass
class DecodeConfig:
    beam: int = 5
    alpha: float = 1.0  # GNMT length penalty exponent
    max_len_a: float = 1.5
    max_len_b: int = 10
    batch_tokens: int = 0  # rows (sentences x beams) x source length per batch; 0: 12000 on CPU, 100000 on CUDA
    nbest: int = 1
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast while decoding (why fp32: docs/performance.md)
    stop: str = "current"  # current | exact: when beam search drops a sentence (mtx/search.py, docs/deploy.md)


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
        d = {sec: {k: v for k, v in vals.items() if f"{sec}.{k}" not in RETIRED} for sec, vals in d.items()}
        cfg = cls()
        merge(cfg, d, source)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> Config:
        """Types, ranges, choices and cross-field rules, before any data is read; the first violation is a
        UsageError naming the key (and its command-line option, where it has one) and the value."""
        for section in (self.model, self.data, self.train, self.decode):
            name = _SECTIONS[type(section)]
            for f in dataclasses.fields(section):
                key, value = f"{name}.{f.name}", getattr(section, f.name)
                want = type(getattr(type(section)(), f.name))
                ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
                if want is float and isinstance(value, int) and not isinstance(value, bool):
                    ok = True
                if not ok:
                    _fail(source, key, value, f"expected a {want.__name__}")
        for key, rule, check in _RULES:
            value = _get(self, key)
            if not check(value, self):
                _fail(source, key, value, rule)
        return self


def _get(cfg: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _fail(source: str, key: str, value: Any, rule: str) -> None:
    flag = f" ({FLAGS[key]})" if key in FLAGS else ""
    raise UsageError(f"{source + ': ' if source else ''}{key}={value!r}{flag}: {rule}")


def _pairs_ok(text: str) -> bool:
    from mtx.pairs import parse_pairs

    try:
        return bool(parse_pairs(text))
    except ValueError:
        return False


def _in(*choices):
    return lambda v, c: v in choices


def _between(lo, hi, lo_open=False, hi_open=False):
    def check(v, c):
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return check


_POS = ("must be > 0", lambda v, c: v > 0)
_NONNEG = ("must be >= 0", lambda v, c: v >= 0)
_PROB = ("must be in [0, 1)", _between(0, 1, hi_open=True))
_RULES: list[tuple[str, str, Any]] = [
    ("model.arch", "expected transformer or rnn", _in("transformer", "rnn")),
    ("model.rnn_cell", "expected gru or lstm", _in("gru", "lstm")),
    (
        "model.d_model",
        "must be even for model.arch=rnn (each encoder direction has d_model / 2 units)",
        lambda v, c: c.model.arch != "rnn" or v % 2 == 0,
    ),
    ("model.vocab_size", "must be >= 8", lambda v, c: v >= 8),
    ("model.d_model", *_POS),
    ("model.n_heads", *_POS),
    ("model.d_model", "must be a multiple of model.n_heads", lambda v, c: v % c.model.n_heads == 0),
    ("model.enc_layers", *_POS),
    ("model.dec_layers", *_POS),
    ("model.d_ff", *_POS),
    ("model.dropout", *_PROB),
    ("model.attn_dropout", *_PROB),
    ("model.act_dropout", *_PROB),
    ("model.max_len", "must be >= 2", lambda v, c: v >= 2),
    ("data.src", "must be a language code", lambda v, c: bool(v.strip())),
    ("data.tgt", "must be a language code", lambda v, c: bool(v.strip())),
    ("data.pairs", "expected SRC-TGT[,SRC-TGT...], e.g. de-en,en-de", lambda v, c: not v or _pairs_ok(v)),
    ("data.temperature", *_POS),
    ("data.max_length_ratio", "must be >= 1 (0: no ratio rule)", lambda v, c: v == 0 or v >= 1),
    ("data.valid_size", *_POS),
    ("data.spm_sample_sentences", "must be >= 1000", lambda v, c: v >= 1000),
    ("data.num_proc", *_POS),
    ("data.columns", "expected two columns, SRC_COL,TGT_COL", lambda v, c: not v or len(v.split(",")) == 2),
    ("data.max_tokens", *_POS),
    (
        "data.max_tokens",
        "must be <= model.max_len (longer pairs could not be encoded)",
        lambda v, c: v <= c.model.max_len,
    ),
    ("data.spm_model_type", "expected unigram, bpe, char or word", _in("unigram", "bpe", "char", "word")),
    ("data.spm_character_coverage", "must be in (0, 1]", _between(0, 1, lo_open=True)),
    ("train.batch_tokens", *_POS),
    ("train.accum", "must be >= 1", lambda v, c: v >= 1),
    ("train.lr", *_POS),
    ("train.warmup_steps", *_NONNEG),
    (
        "train.schedule",
        "expected cosine, inv_sqrt, linear or constant",
        _in("cosine", "inv_sqrt", "linear", "constant"),
    ),
    ("train.min_lr_ratio", "must be in [0, 1]", _between(0, 1)),
    ("train.weight_decay", *_NONNEG),
    ("train.betas", "each must be in [0, 1)", lambda v, c: all(0 <= b < 1 for b in v)),
    ("train.label_smoothing", *_PROB),
    ("train.src_token_dropout", *_PROB),
    ("train.tgt_token_dropout", *_PROB),
    ("train.clip_norm", *_NONNEG),
    ("train.max_steps", *_NONNEG),
    ("train.max_epochs", "must be >= 1", lambda v, c: v >= 1),
    ("train.time_budget_min", *_NONNEG),
    ("train.eval_every", *_POS),
    ("train.eval_bleu_sents", "must be >= -1 (-1: all)", lambda v, c: v >= -1),
    ("train.average", *_NONNEG),
    ("train.average_frac", "must be in (0, 1]", _between(0, 1, lo_open=True)),
    ("train.device", "expected auto, cpu or cuda", _in("auto", "cpu", "cuda")),
    ("train.amp", "expected auto, bf16 or fp32", _in("auto", "bf16", "fp32")),
    ("train.threads", *_NONNEG),
    ("train.log_every", *_POS),
    ("train.save_every", *_NONNEG),
    ("train.keep_last", "must be >= 1", lambda v, c: v >= 1),
    ("train.max_nonfinite", "must be >= 1", lambda v, c: v >= 1),
    ("decode.beam", "must be >= 1", lambda v, c: v >= 1),
    ("decode.alpha", "expected a length penalty between 0 and 10", _between(0, 10)),
    ("decode.max_len_a", *_NONNEG),
    ("decode.max_len_b", *_NONNEG),
    ("decode.max_len_b", "max_len_a + max_len_b must be >= 1", lambda v, c: c.decode.max_len_a + v >= 1),
    ("decode.batch_tokens", *_NONNEG),
    ("decode.nbest", "must be between 1 and decode.beam", lambda v, c: 1 <= v <= c.decode.beam),
    ("decode.precision", "expected fp32, bf16 or fp16", _in("fp32", "bf16", "fp16")),
    ("decode.stop", "expected current or exact", _in("current", "exact")),
]

_SECTIONS = {ModelConfig: "model", DataConfig: "data", TrainConfig: "train", DecodeConfig: "decode"}
# Command-line options that set a key, named in its errors.
FLAGS = {
    "train.time_budget_min": "--time-budget",
    "train.accum": "--accum",
    "train.device": "--device",
    "data.src": "--src",
    "data.tgt": "--tgt",
    "data.pairs": "--pairs",
    "decode.beam": "--beam",
    "decode.alpha": "--alpha",
    "decode.nbest": "--nbest",
    "decode.batch_tokens": "--batch-tokens",
}
# Keys that older checkpoints hold and this mtx ignores (special ids are fixed by the tokenizer).
RETIRED = {"model.pad_id", "model.bos_id", "model.eos_id"}


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
            setattr(sub, key, _coerce(value, getattr(sub, key), f"{section}.{key}", source))


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


def build_config(file: Path | None = None, overrides: list[str] | None = None, base: Config | None = None) -> Config:
    """`base` (or the defaults), then the file, then the `--set` overrides; validated."""
    cfg = base or Config()
    if file is not None:
        merge(cfg, load_file(file), str(file))
        cfg.validate(str(file))
    for item in overrides or []:
        merge(cfg, parse_override(item), "--set")
    return cfg.validate("")


def configure(file: Path | None, overrides: list[str], device_type: str) -> Config:
    """A new training's config: the preset of the device and of the architecture the file or overrides name,
    then the file, then the overrides."""
    cfg = build_config(file, overrides, base=preset(device_type))
    if cfg.model.arch != "transformer":
        cfg = build_config(file, overrides, base=preset(device_type, cfg.model.arch))
    return cfg


def preset(device_type: str, arch: str = "transformer") -> Config:
    """The default settings for a device and architecture: a small fast Transformer on CPU, a larger one on
    CUDA; an RNN for comparison."""
    cfg = Config()
    if arch == "rnn":
        return rnn_preset(cfg, device_type)
    if device_type == "cuda":
        cfg.model = ModelConfig(d_model=512, n_heads=8, enc_layers=6, dec_layers=3, d_ff=2048, dropout=0.3)
        cfg.train.batch_tokens = 12000
        cfg.train.lr = 1.5e-3
        cfg.train.warmup_steps = 400
        cfg.train.time_budget_min = 5.0
        cfg.train.eval_every = 500
        # Averaging over the second half (why, and the CPU measurement that turned it off there: docs/results.md)
        cfg.train.average = 6
        cfg.train.average_frac = 0.5
    else:
        # Peak lr chosen on val with 15-minute runs (docs/results.md)
        cfg.train.lr = 2e-3
        cfg.train.time_budget_min = 15.0
        cfg.train.amp = "bf16" if _cpu_has_bf16() else "fp32"  # on CPUs with AVX512-BF16/AMX
    return cfg


def rnn_preset(cfg: Config, device_type: str) -> Config:
    """The RNN baseline: chosen on val among the CPU candidates of docs/rnn.md."""
    cfg.model = ModelConfig(arch="rnn", d_model=512, enc_layers=1, dec_layers=1, dropout=0.2)
    cfg.train.lr = 2e-3
    cfg.train.time_budget_min = 15.0 if device_type != "cuda" else 5.0
    cfg.train.amp = "bf16" if device_type == "cuda" or _cpu_has_bf16() else "fp32"
    return cfg


def _cpu_has_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# What a resumed training may not change: the weights and the tokenizer are built from model.* and data.*, and
# the saved data position indexes the epoch plan made from the seed and the batch size. (Everything else,
# such as the time budget, steps, intervals, lr, schedule and optimizer settings, takes effect on resume.)
FROZEN_ON_RESUME = ("model.", "data.", "train.seed", "train.batch_tokens")
UNFROZEN = {"data.test_split", "data.path", "data.num_proc"}  # read by `mtx evaluate` only; where; how fast


def check_resume(saved: Config, new: Config, source: str) -> None:
    """Refuse a resumed training whose settings differ from the saved ones where that cannot work."""
    old_flat, new_flat = _flat(saved), _flat(new)
    for key, old in old_flat.items():
        if key.startswith(FROZEN_ON_RESUME) and key not in UNFROZEN and new_flat[key] != old:
            raise UsageError(
                f"{source}: {key} is {old!r} in the saved training and {new_flat[key]!r} now; a resumed training "
                f"keeps its model, data and batching settings (train a new model with another --out)"
            )


def _flat(cfg: Config) -> dict[str, Any]:
    return {f"{sec}.{k}": v for sec, vals in cfg.to_dict().items() for k, v in vals.items()}
