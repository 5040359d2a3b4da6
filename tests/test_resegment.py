"""Subword regularisation: sampled segmentations decode back to the text, differ from batch to batch (and from
the one best), repeat for a seed and a batch; training runs with it."""

import json

import numpy as np
from conftest import TINY_SETTINGS, write_corpus
from datasets import Dataset
from test_cli import run

from mtx.config import build_config
from mtx.data.prepare import prepare_data
from mtx.data.resegment import Resegmenter, padded
from mtx.data.sources import PairSplit
from mtx.data.tokenizer import EOS, PAD


def _data(root, alpha, sides="both", seed=1):
    settings = [*TINY_SETTINGS, "model.vocab_size=150", f"data.subword_alpha={alpha}", f"data.subword_sides={sides}"]
    return prepare_data(build_config(None, [*settings, f"train.seed={seed}"]), root)


def _rows(t):
    return [[i for i in row if i not in (PAD, EOS)] for row in t.tolist()]


def test_sampled_segmentations_are_the_same_text_and_differ_each_time(tmp_path):
    root = write_corpus(tmp_path / "c", {"train": 80, "val": 10})
    plain, sampled = _data(root, 0.0), _data(root, 0.5)
    idx = np.arange(len(plain.train))
    fixed = plain.train.collate(idx)
    a, b = sampled.train.collate(idx), sampled.train.collate(idx[::-1].copy())  # the same rows, another batch
    tok = sampled.tokenizer
    for side in ("src", "tgt_out"):
        want = tok.decode(_rows(getattr(fixed, side)))
        assert tok.decode(_rows(getattr(a, side))) == want == tok.decode(_rows(getattr(b, side)))[::-1]
        assert _rows(getattr(a, side)) != _rows(getattr(b, side))[::-1]  # another batch, another sample
        assert _rows(getattr(a, side)) != _rows(getattr(fixed, side))
    assert (a.tgt_in != PAD).eq(a.tgt_out != PAD).all()  # decoder input BOS y, output y EOS: the same sample
    assert [r[1:] for r in _rows(a.tgt_in)] == _rows(a.tgt_out)
    again = _data(root, 0.5).train.collate(idx)
    assert _rows(again.src) == _rows(a.src)  # the same seed and batch: the same samples
    other = _data(root, 0.5, seed=2).train.collate(idx)
    assert _rows(other.src) != _rows(a.src)
    src_only = _data(root, 0.5, "src").train.collate(idx)
    assert _rows(src_only.tgt_out) == _rows(fixed.tgt_out)


def test_training_with_subword_regularisation(tiny_corpus, tmp_path, monkeypatch):
    """`mtx train` with data.subword_alpha samples every training batch's sources (data.subword_sides' default)
    at that alpha, and the model keeps the setting."""
    calls = []
    real = Resegmenter.__call__

    def spy(self, rows, side):
        calls.append((self.alpha, side))
        return real(self, rows, side)

    monkeypatch.setattr(Resegmenter, "__call__", spy)
    sets = [x for s in [*TINY_SETTINGS, "train.max_steps=10", "train.eval_every=10", "data.subword_alpha=0.3"]
            for x in ("--set", s)]  # fmt: skip
    r = run("train", "--data", tiny_corpus, "--out", tmp_path / "m", "--device", "cpu", *sets)
    assert r.exit_code == 0, r.output
    assert len(calls) >= 10 and set(calls) == {(0.3, "src")}
    assert json.loads((tmp_path / "m" / "config.json").read_text())["config"]["data"]["subword_alpha"] == 0.3


def test_alpha_sets_how_far_the_samples_stray_from_the_one_best(tmp_path):
    """alpha is the unigram sampler's smoothing (segmentations drawn with probability ∝ P^alpha, Kudo 2018): a
    small alpha flattens the distribution, so more rows come out segmented otherwise than the one best; a large
    one sharpens it towards the one best."""
    root = write_corpus(tmp_path / "c", {"train": 80, "val": 10})
    fixed = _rows(_data(root, 0.0).train.collate(np.arange(80)).src)

    def changed(alpha: float) -> float:
        rows = _rows(_data(root, alpha).train.collate(np.arange(80)).src)
        return sum(a != b for a, b in zip(rows, fixed, strict=True)) / len(rows)

    flat, sharp = changed(0.05), changed(1.0)
    assert flat > 0.5 > sharp, (flat, sharp)


def _split(name: str, rows: list[str]) -> PairSplit:
    ds = Dataset.from_dict({"src": rows, "tgt": [r.upper() for r in rows]})
    return PairSplit(name, name, lambda: ds, name)


def test_rows_of_several_corpora_are_found_in_their_own(tmp_path):
    """Rows count through the corpora end to end: row 4 is the second corpus' first; a batch's rows, in any order
    and from every corpus, get their own texts (stripped), on either side."""
    root = write_corpus(tmp_path / "c", {"train": 40, "val": 5})
    tok = _data(root, 0.5).tokenizer
    words = ["ein", "mann", "frau", "kind", "rot", "blau"]
    corpora = [
        [f"{w} hund" for w in words[:4]],
        [f" {w} katze " for w in words],
        [f"{w} mann rennt" for w in words[:3]],
    ]
    rs = Resegmenter(tok, [_split(n, c) for n, c in zip("abc", corpora, strict=True)], 0.5, "both", 1, 64)
    flat = [t.strip() for c in corpora for t in c]
    rows = np.array([7, 0, 12, 3, 4, 9, 10, 1])
    assert rs.texts(rows, "src") == [flat[r] for r in rows]
    assert rs.texts(rows, "tgt") == [flat[r].upper() for r in rows]
    ids, lens = rs(rows, "src")
    assert tok.decode([list(x[:n]) for x, n in zip(ids, lens, strict=True)]) == [flat[r] for r in rows]
    assert Resegmenter(tok, [], 0.5, "", 1, 64).sides == () and rs.sides == ("src", "tgt")


def test_a_large_batch_samples_the_same_on_every_run(tmp_path):
    """The seed of a batch's rows fixes its samples, however many sentences it holds."""
    root = write_corpus(tmp_path / "c", {"train": 400, "val": 5})
    tok = _data(root, 0.5).tokenizer
    texts = (root / "train.de").read_text(encoding="utf-8").splitlines() * 10
    rs = Resegmenter(tok, [_split("a", texts)], 0.5, "both", 1, 64)
    rows = np.arange(len(texts))
    first = [rs(rows, "src")[0].tolist() for _ in range(3)]
    assert first[0] == first[1] == first[2]


def test_padded_rows():
    ids, lens = padded([[5, 6], [], [7]])
    assert ids.tolist() == [[5, 6], [PAD, PAD], [7, PAD]] and lens.tolist() == [2, 0, 1]
    assert padded([])[0].shape == (0, 0) and padded([[], []])[0].shape == (2, 0)
