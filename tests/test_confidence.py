"""The confidence of a translation (mtx/decode/confidence.py): the mean token log-probability of what the search
found, the same whatever the length penalty; its calibration fitted on a validation split, kept in the model
directory and used by every command; how well it ranks sentences."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from test_cli import _one_line_error, run

from mtx import checkpoint
from mtx.decode.confidence import (
    FILE,
    Calibration,
    confidence,
    decile_overlap,
    fit,
    mean_logprob,
    read_calibration,
    spearman,
)
from mtx.decode.load import load
from mtx.decode.scoring import score_lines
from mtx.errors import MtxError


def _sources(corpus, split="test_2016_flickr", n=8):
    return (corpus / f"{split}.de").read_text(encoding="utf-8").splitlines()[:n]


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_uncalibrated_confidence_is_the_geometric_mean_token_probability(tiny_model, tiny_corpus, alpha):
    """Without a calibration, a translation's confidence is exp(its log-probability / its tokens with EOS), its
    log-probability scored by teacher forcing; the same for any length penalty. (Without the repetition rule,
    whose search renormalises over the tokens it allows.)"""
    src = _sources(tiny_corpus) + ["hund katze hund katze hund"]  # an odd sentence too
    translator, cfg = load(tiny_model, device="cpu", alpha=alpha, beam=3, no_repeat_ngram=0)
    assert translator.calibration is None
    trs = translator.translate(src)
    model, tok, _, _ = checkpoint.load(tiny_model, torch.device("cpu"))
    scores = list(score_lines(model, tok, [(s, t.text) for s, t in zip(src, trs, strict=True)], alpha=alpha))
    for tr, sc in zip(trs, scores, strict=True):
        assert sc.tokens == len(tr.tokens) + 1
        assert tr.confidence == pytest.approx(math.exp(sc.logprob / sc.tokens), rel=1e-4)
        assert 0.0 < tr.confidence <= 1.0
    assert min(t.confidence for t in trs) < max(t.confidence for t in trs)


def test_mean_logprob_undoes_the_length_penalty():
    for alpha in (0.0, 0.5, 1.0, 2.0):
        for tokens in (0, 1, 7, 40):
            n = tokens + 1
            score = -3.5 / ((5 + n) / 6) ** alpha
            assert mean_logprob(score, tokens, alpha) == pytest.approx(-3.5 / n)


def test_confidence_of_nothing_found_is_zero_and_of_a_perfect_one_is_one():
    assert confidence(float("-inf"), None) == 0.0
    assert confidence(0.0, None) == 1.0
    cal = Calibration(3.0, 1.0)
    assert confidence(-0.5, cal) == pytest.approx(1 / (1 + math.exp(-(3.0 * -0.5 + 1.0))))
    assert confidence(float("-inf"), cal) == 0.0


def test_fit_recovers_the_sigmoid_the_data_follow():
    rng = random.Random(0)
    xs = [rng.uniform(-3, 0) for _ in range(400)]
    ys = [1 / (1 + math.exp(-(2.5 * x + 1.2))) for x in xs]
    cal = fit(xs + [float("-inf")], ys + [0.3], "val")  # a sentence with nothing found is left out
    assert (cal.a, cal.b) == (pytest.approx(2.5, abs=1e-3), pytest.approx(1.2, abs=1e-3))
    assert (cal.split, cal.sentences) == ("val", 400)


def test_a_calibration_round_trips_and_a_damaged_one_is_one_line(tmp_path):
    assert read_calibration(tmp_path) is None
    Calibration(2.0, -0.5, "val", 12).save(tmp_path)
    assert read_calibration(tmp_path) == Calibration(2.0, -0.5, "val", 12)
    (tmp_path / FILE).write_text('{"a": "x"}', encoding="utf-8")
    with pytest.raises(MtxError, match=f"{FILE}: not a confidence calibration"):
        read_calibration(tmp_path)


def test_ranking_figures():
    q = list(range(100))
    assert spearman(q, [x * x for x in q]) == pytest.approx(1.0)
    assert spearman(q, [-x for x in q]) == pytest.approx(-1.0)
    assert spearman(q, [1.0] * 100) == 0.0  # a constant confidence ranks nothing
    assert decile_overlap([x * 2 for x in q], q) == 1.0
    assert decile_overlap([-x for x in q], q) == 0.0
    rng = np.random.default_rng(0)
    noisy = [x + rng.normal(0, 30) for x in q]
    assert 0.0 < decile_overlap(noisy, q) < 1.0


def _noisy_corpus(tiny_corpus, tmp_path):
    """The tiny corpus' val with a word dropped from some sources: translations of every quality."""
    out = tmp_path / "noisy"
    out.mkdir()
    rng = random.Random(1)
    src = (tiny_corpus / "val.de").read_text(encoding="utf-8").splitlines()
    noisy = [" ".join(w for w in s.split() if rng.random() > 0.4) or s for s in src]
    (out / "val.de").write_text("".join(x + "\n" for x in noisy), encoding="utf-8")
    (out / "val.en").write_bytes((tiny_corpus / "val.en").read_bytes())
    return out


def test_calibrate_fits_on_val_and_every_command_uses_it(model_copy, tiny_corpus, tmp_path):
    noisy = _noisy_corpus(tiny_corpus, tmp_path)
    r = run("calibrate", "--model", model_copy, "--data", noisy, "--device", "cpu")
    assert r.exit_code == 0, r.output
    cal = read_calibration(model_copy)
    assert cal is not None and (cal.split, cal.sentences) == ("val", 20)
    assert cal.a > 0  # a likelier translation is a better one
    assert "Spearman" in r.stdout and str(model_copy / FILE) in r.stdout
    src = _sources(tiny_corpus, n=3)
    translator, cfg = load(model_copy, device="cpu")
    assert translator.calibration == cal
    trs = translator.translate(src)
    for tr in trs:
        mean = mean_logprob(tr.nbest[0][1], len(tr.tokens), cfg.decode.alpha)
        assert tr.confidence == pytest.approx(cal(mean))
    out = run("translate", "--model", model_copy, "--device", "cpu", "--json", *src)
    assert out.exit_code == 0, out.output
    got = [json.loads(x)["confidence"] for x in out.stdout.splitlines()]
    assert got == [round(t.confidence, 4) for t in trs]
    ev = run("evaluate", "--model", model_copy, "--device", "cpu", "--json", "--data", noisy, "--split", "val")
    row = json.loads(ev.stdout.splitlines()[-1])
    assert len(row["confidence"]) == len(row["sentence_chrf"]) == 20
    assert row["confidence_spearman"] == pytest.approx(spearman(row["confidence"], row["sentence_chrf"]), abs=2e-3)
    assert -1.0 <= row["confidence_spearman"] <= 1.0 and "means" not in row


def test_calibrate_refuses_the_test_split(tiny_model):
    r = run("calibrate", "--model", tiny_model, "--device", "cpu", "--split", "test_2016_flickr")
    _one_line_error(r, 2, "test split", "validation split")
