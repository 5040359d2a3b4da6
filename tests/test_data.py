"""Corpus validation, tokenizer, batches and masks, config."""

import random
import re
from pathlib import Path

import pytest
import torch
from conftest import LEXICON, write_corpus

from mtx.config import Config, DataConfig, build_config, check_resume
from mtx.data.batching import TrainBatches, bucket, bucket_ascending, collate, sorted_batches
from mtx.data.sources import Corpus
from mtx.data.tokenizer import BOS, EOS, PAD, Tokenizer
from mtx.errors import MtxError, UsageError


def _write(d: Path, name: str, data: bytes) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)
    return d / name


def load_split(data_dir, split, src, tgt):
    """A text directory's split as lists (through the path training takes)."""
    cols = Corpus(data_dir, DataConfig(train_split=split)).split("train", src, tgt).ds.to_dict()
    return type("Split", (), {"src": cols["src"], "tgt": cols["tgt"]})


def test_load_split_reads_aligned_files(tmp_path):
    """Every pair read is a sentence and its own translation, in file order (the toy language is word for word)."""
    write_corpus(tmp_path, {"train": 50})
    split = load_split(tmp_path, "train", "de", "en")
    assert split.src == (tmp_path / "train.de").read_text(encoding="utf-8").splitlines() and len(split.src) == 50
    for de, en in zip(split.src, split.tgt, strict=True):
        assert en.lower().rstrip(".").split() == [LEXICON[w] for w in de.lower().rstrip(".").split()]
    # the same files with the target in another order are read as they are (and no longer translate)
    lines = (tmp_path / "train.en").read_text(encoding="utf-8").splitlines()
    (tmp_path / "train.en").write_text("".join(x + "\n" for x in lines[1:] + lines[:1]), encoding="utf-8")
    assert load_split(tmp_path, "train", "de", "en").tgt == lines[1:] + lines[:1]


@pytest.mark.parametrize(
    "src, tgt, message",
    [
        (b"a\nb\nc\n", b"x\ny\n", "train.de:3: files are not aligned (train.de has 3 lines, train.en has 2)"),
        (b"a\nb\n", b"x\n\xff\xfe\n", "train.en:2: invalid UTF-8 at byte 0"),
        (b"a\rb\n", b"x\n", "train.de:1: carriage return inside a line"),
        (b"", b"", "train.de: file is empty"),
    ],
)
def test_corpus_errors_name_file_and_line(tmp_path, src, tgt, message):
    _write(tmp_path, "train.de", src)
    _write(tmp_path, "train.en", tgt)
    with pytest.raises(MtxError) as e:
        load_split(tmp_path, "train", "de", "en")
    assert message in str(e.value)


def test_missing_file_and_directory(tmp_path):
    _write(tmp_path, "train.de", b"a\n")
    with pytest.raises(MtxError, match="train.en: file not found"):
        load_split(tmp_path, "train", "de", "en")
    with pytest.raises(MtxError, match="data not found"):
        load_split(tmp_path / "nope", "train", "de", "en")


def test_tokenizer_round_trip_and_special_ids(tiny_corpus):
    lines = (tiny_corpus / "train.de").read_text(encoding="utf-8").splitlines()
    tok = Tokenizer.train(lines, 60)
    ids = tok.encode(lines[:10])
    assert tok.decode(ids) == lines[:10]
    assert all(i not in (PAD, BOS, EOS) for x in ids for i in x)
    again = Tokenizer(tok.proto)
    assert again.encode(lines[:3]) == ids[:3]


def test_collate_masks_and_shift():
    b = collate([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]])
    assert b.src.tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD]]
    assert b.src_mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert b.tgt_in.tolist() == [[BOS, 9, 10, PAD], [BOS, 11, 12, 13]]
    assert b.tgt_out.tolist() == [[9, 10, EOS, PAD], [11, 12, 13, EOS]]
    assert b.src_mask.dtype == torch.bool and b.n_tgt_tokens == 7


def test_train_batches_budget_cover_and_determinism():
    src = [[4] * (1 + i % 17) for i in range(300)]
    tgt = [[5] * (1 + i % 11) for i in range(300)]
    tb = TrainBatches(src, tgt, batch_tokens=64, seed=3)
    batches = tb.epoch(0)
    assert sorted(i for b in batches for i in b) == list(range(300))  # every pair once
    for b in batches:
        assert len(b) * max(tb.lengths[i] for i in b) <= 64 or len(b) == 1
    assert [b.tolist() for b in batches] == [b.tolist() for b in TrainBatches(src, tgt, 64, seed=3).epoch(0)]
    assert [b.tolist() for b in batches] != [b.tolist() for b in tb.epoch(1)]


def test_gathered_batches_equal_padded_lists():
    rng = random.Random(0)
    src = [[rng.randrange(4, 99) for _ in range(rng.randint(1, 12))] for _ in range(200)]
    tgt = [[rng.randrange(4, 99) for _ in range(rng.randint(1, 12))] for _ in range(200)]
    tb = TrainBatches(src, tgt, batch_tokens=100, seed=0)
    for idx in [[0], [5, 3, 199], rng.sample(range(200), 40)]:
        got, want = tb.collate(idx), collate([src[i] for i in idx], [tgt[i] for i in idx])
        for name in ("src", "src_mask", "tgt_in", "tgt_out"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
        assert tb.n_tgt(idx) == want.n_tgt_tokens == got.n_tgt_tokens


def test_bisected_bucketing_equals_the_greedy_loop():
    rng = random.Random(1)
    for budget in (1, 7, 50, 400):
        lengths = sorted(rng.randint(1, 30) for _ in range(500))
        assert [list(range(a, b)) for a, b in bucket_ascending(lengths, budget)] == bucket(lengths, budget)


def test_sorted_batches_budget_and_order():
    rng = random.Random(2)
    lengths = [rng.randint(1, 20) for _ in range(300)]
    for budget in (1, 25, 100):
        groups = sorted_batches(lengths, budget)
        flat = [i for g in groups for i in g]
        assert sorted(flat) == list(range(300))  # every sentence once
        assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first
        for g in groups:
            assert len(g) == 1 or len(g) * max(lengths[i] for i in g) <= budget
        for g in groups[:-1]:  # and full: one more sentence would not have fitted
            assert (len(g) + 1) * max(lengths[i] for i in g) > budget


def test_config_overrides_and_unknown_keys(tmp_path):
    cfg = build_config(None, ["model.d_model=128", "train.lr=1e-3", "model.pre_norm=false"])
    assert cfg.model.d_model == 128 and cfg.train.lr == 1e-3 and cfg.model.pre_norm is False
    f = tmp_path / "c.toml"
    f.write_text("[model]\nenc_layers = 2\n[train]\nbetas = [0.9, 0.99]\n")
    cfg = build_config(f, ["model.enc_layers=5"])
    assert cfg.model.enc_layers == 5 and cfg.train.betas == (0.9, 0.99)
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(UsageError, match="unknown config key 'model.d_modle'"):
        build_config(None, ["model.d_modle=3"])
    with pytest.raises(UsageError, match="unknown config section"):
        build_config(None, ["modle.d_model=3"])
    with pytest.raises(UsageError, match="not a valid int"):
        build_config(None, ["model.d_model=big"])
    f.write_text("[nope]\nx = 1\n")
    with pytest.raises(UsageError, match="c.toml: unknown config section 'nope'"):
        build_config(f)


def test_validate_checks_types_ranges_choices_and_cross_fields(tmp_path):
    cfg = Config()
    cfg.train.lr = "fast"  # set in code, not through --set: still caught
    with pytest.raises(UsageError, match="train.lr='fast': expected a float"):
        cfg.validate()
    for setting, message in [
        ("train.schedule=step", "train.schedule='step': expected cosine"),
        ("decode.alpha=-1", "decode.alpha=-1.0 (--alpha): expected a length penalty between 0 and 10"),
        ("data.max_tokens=257", "data.max_tokens=257: must be <= model.max_len"),
        ("decode.nbest=6", "decode.nbest=6 (--nbest): must be between 1 and decode.beam"),
        ("train.betas=0.9,1.5", "train.betas=(0.9, 1.5): each must be in [0, 1)"),
        ("train.amp=fp16", "train.amp='fp16': expected auto, bf16 or fp32"),
    ]:
        with pytest.raises(UsageError, match=re.escape(message)):
            build_config(None, [setting])
    f = tmp_path / "c.toml"
    f.write_text("[train]\nwarmup_steps = -3\n")
    with pytest.raises(UsageError, match=re.escape("c.toml: train.warmup_steps=-3: must be >= 0")):
        build_config(f)
    saved = Config().to_dict()
    saved["model"]["dropout"] = 1.5
    with pytest.raises(UsageError, match=re.escape("checkpoint: model.dropout=1.5: must be in [0, 1)")):
        Config.from_dict(saved, "checkpoint")


def test_saved_configs_with_retired_keys_still_load():
    saved = Config().to_dict()
    saved["model"] |= {"pad_id": 0, "bos_id": 2, "eos_id": 3}
    assert Config.from_dict(saved) == Config()
    with pytest.raises(UsageError, match="unknown config key 'model.pad_id'"):
        build_config(None, ["model.pad_id=5"])


def test_check_resume_refuses_model_and_data_changes():
    saved = Config()
    for setting, key in [("model.enc_layers=7", "model.enc_layers is 4"), ("data.src=fr", "data.src is 'de'"),
                         ("data.max_tokens=100", "data.max_tokens"), ("train.seed=2", "train.seed")]:  # fmt: skip
        with pytest.raises(UsageError, match=re.escape(key)):
            check_resume(saved, build_config(None, [setting]), "--resume")
    for fine in ["train.time_budget_min=3", "train.lr=1e-3", "train.max_steps=10", "train.weight_decay=0.1",
                 "train.eval_every=7", "train.schedule=linear", "data.test_split=val", "decode.beam=2"]:  # fmt: skip
        check_resume(saved, build_config(None, [fine]), "--resume")
