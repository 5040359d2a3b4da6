"""Case and punctuation augmentation (issue 34): it changes the share of batches it should, both sides alike, the
others not at all; it is reproducible by seed and composes with subword regularisation."""

import json

import numpy as np
import pytest
from conftest import TINY_SETTINGS, write_corpus
from test_cli import run

from mtx.config import build_config
from mtx.data.augment import Augmenter, no_final_punctuation, title, upper, with_case_copies
from mtx.data.prepare import prepare_data
from mtx.data.tokenizer import EOS, PAD
from mtx.errors import UsageError


def _data(root, seed=1, tok=None, **augment):
    settings = [*TINY_SETTINGS, "model.vocab_size=150", *(f"data.{k}={v}" for k, v in augment.items())]
    return prepare_data(build_config(None, [*settings, f"train.seed={seed}"]), root, tok)


def _text(tok, t) -> list[str]:
    return tok.decode([[i for i in row if i not in (PAD, EOS)] for row in t.tolist()])


def test_the_changes():
    assert upper("Ein Hund läuft.") == "EIN HUND LÄUFT."
    assert title("a dog's ball, in the park.") == "A Dog's Ball, In The Park."
    assert no_final_punctuation('Er sagt: "Ja." ') == 'Er sagt: "Ja'
    assert no_final_punctuation("Zwei Hunde") == "Zwei Hunde"
    assert no_final_punctuation("...") == ""


def test_the_share_of_batches_each_change_takes():
    """Over 4,000 batches, each change takes its probability's share (within 4 binomial standard deviations); the
    two case changes never meet; the draws depend on the rows and the seed only."""
    aug = Augmenter(None, 0.2, 0.1, 0.3, seed=5)
    g = np.random.default_rng(0)
    batches = [g.choice(10_000, size=int(g.integers(2, 40)), replace=False) for _ in range(4000)]
    drawn = [aug.changes(rows) for rows in batches]
    for change, p in ((upper, 0.2), (title, 0.1), (no_final_punctuation, 0.3)):
        share = sum(change in c for c in drawn) / len(drawn)
        assert abs(share - p) < 4 * (p * (1 - p) / len(drawn)) ** 0.5, (change.__name__, share)
    assert not any(upper in c and title in c for c in drawn)
    assert [Augmenter(None, 0.2, 0.1, 0.3, seed=5).changes(rows) for rows in batches] == drawn
    assert [Augmenter(None, 0.2, 0.1, 0.3, seed=6).changes(rows) for rows in batches] != drawn
    assert not any(Augmenter(None, 0.0, 0.0, 0.0, seed=5).changes(rows) for rows in batches[:200])


@pytest.mark.parametrize("subword_alpha", [0.0, 0.5])
def test_a_chosen_batch_has_both_sides_changed_and_the_others_are_untouched(tmp_path, subword_alpha):
    root = write_corpus(tmp_path / "c", {"train": 120, "val": 10})
    aug = _data(root, 1, augment_upper=0.5, augment_nopunct=0.5, subword_alpha=subword_alpha, subword_sides="both")
    tok, n = aug.tokenizer, len(aug.train)
    plain = _data(root, 1, tok, subword_alpha=subword_alpha, subword_sides="both")  # the same vocabulary
    g = np.random.default_rng(1)
    seen = {"upper": 0, "plain": 0}
    for _ in range(30):
        idx = g.choice(n, size=8, replace=False)
        changes = aug.train.augment.changes(aug.train.rows[idx])
        got, want = aug.train.collate(idx), plain.train.collate(idx)
        for side in ("src", "tgt_out"):
            expected = _text(tok, getattr(want, side))
            for change in changes:
                expected = [change(t) for t in expected]
            # (a capital the tokenizer never saw in training is UNK: the toy corpus has none)
            assert _text(tok, getattr(got, side)) == tok.decode(tok.encode(expected))
        out = got.tgt_out.masked_fill(got.tgt_out == EOS, PAD)
        assert got.tgt_in[:, 1:].equal(out[:, :-1])  # decoder input BOS y, output y EOS: the same pieces
        if not changes:
            assert got.src.equal(want.src) and got.tgt_out.equal(want.tgt_out)  # the very same ids
        seen["upper" if upper in changes else "plain"] += 1
    assert seen["upper"] and seen["plain"]
    again = _data(root, 1, augment_upper=0.5, augment_nopunct=0.5, subword_alpha=subword_alpha, subword_sides="both")
    idx = np.arange(16)
    assert again.train.collate(idx).src.equal(aug.train.collate(idx).src)  # reproducible by seed


def test_the_tokenizer_learns_capitals_from_case_copies(tmp_path):
    """The tokenizer's sample gets a copy in capitals (or title case) after the share of its lines the
    augmentation puts in capitals (or title case), so that capitals get pieces of their own."""
    lines = [f"ein hund {i}." for i in range(4000)]
    out = list(with_case_copies(lines, 0.2, 0.1, seed=3))
    uppers, titles = sum(x.startswith("EIN HUND") for x in out), sum(x.startswith("Ein Hund") for x in out)
    assert abs(uppers / 4000 - 0.2) < 0.03 and abs(titles / 4000 - 0.1) < 0.03
    assert [x for x in out if x == x.lower()] == lines  # every line, in order
    assert list(with_case_copies(lines, 0, 0, seed=3)) == lines
    root = write_corpus(tmp_path / "c", {"train": 300, "val": 10})
    caps = [upper(x) for x in (root / "train.de").read_text().splitlines()[:50]]
    plain, aug = _data(root).tokenizer, _data(root, augment_upper=0.3).tokenizer
    assert sum(map(len, aug.encode(caps))) < 0.8 * sum(map(len, plain.encode(caps)))


def test_probabilities_are_checked_in_one_line():
    with pytest.raises(UsageError, match="augment_upper \\+ augment_title must be <= 1"):
        build_config(None, ["data.augment_upper=0.7", "data.augment_title=0.5"])
    with pytest.raises(UsageError, match="data.augment_nopunct"):
        build_config(None, ["data.augment_nopunct=1.5"])


def test_training_with_augmentation(tiny_corpus, tmp_path):
    sets = [x for s in [*TINY_SETTINGS, "train.max_steps=10", "train.eval_every=10", "data.augment_upper=0.5"]
            for x in ("--set", s)]  # fmt: skip
    r = run("train", "--data", tiny_corpus, "--out", tmp_path / "m", "--device", "cpu", *sets)
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["config"]["data"]
    assert (saved["augment_upper"], saved["augment_title"], saved["augment_nopunct"]) == (0.5, 0.0, 0.0)
