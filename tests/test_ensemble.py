"""Ensembles: of one model, the model; of identical models, the model; beam 1 == greedy; cached == uncached;
scores equal the search's; the CLI with --model twice and its refusals."""

import json

import pytest
import torch
from conftest import ARCH_IDS, ARCHS, random_batch, random_model
from test_cli import _one_line_error, run

from mtx.data.tokenizer import Tokenizer
from mtx.decode.scoring import score_ids
from mtx.decode.search import beam_search, greedy_search
from mtx.models.ensemble import Ensemble


def _same(a, b):
    assert [[t for t, _ in r] for r in a] == [[t for t, _ in r] for r in b]
    assert [s for r in a for _, s in r] == pytest.approx([s for r in b for _, s in r], abs=1e-4)


def _pair(arch):
    m1, m2 = random_model(seed=1, **arch), random_model(seed=2, **arch)
    with torch.no_grad():
        for m in (m1, m2):
            m.out_bias[3] = 1.5  # outputs of different lengths
    return m1, m2


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_an_ensemble_of_one_or_of_copies_is_the_model(arch):
    m1, _ = _pair(arch)
    src, mask = random_batch(5, 7, seed=3)
    alone = beam_search(m1, src, mask, beam=3, nbest=3)
    _same(beam_search(Ensemble([m1]), src, mask, beam=3, nbest=3), alone)
    _same(beam_search(Ensemble([m1, m1], [0.3, 0.7]), src, mask, beam=3, nbest=3), alone)


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_ensemble_search_properties(arch):
    ens = Ensemble(list(_pair(arch)))
    src, mask = random_batch(6, 7, seed=4)
    _same(greedy_search(ens, src, mask, use_cache=True), greedy_search(ens, src, mask, use_cache=False))
    _same(beam_search(ens, src, mask, beam=4, nbest=2), beam_search(ens, src, mask, beam=4, nbest=2, use_cache=False))
    _same(beam_search(ens, src, mask, beam=1), greedy_search(ens, src, mask))
    # the mean of log-probabilities, renormalised
    m1, m2 = ens.members
    tgt = torch.randint(4, 50, (6, 5))
    want = torch.log_softmax((m1(src, mask, tgt).log_softmax(-1) + m2(src, mask, tgt).log_softmax(-1)) / 2, -1)
    assert torch.allclose(ens(src, mask, tgt).log_softmax(-1), want, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_weights_mix_log_probabilities_in_every_path(arch):
    """Weights 0.3/0.7 on two different models: forward, decode and the cached step all give
    log_softmax(0.3 log p1 + 0.7 log p2) (not the mean of probabilities, not equal weights), and every row is a
    distribution."""
    m1, m2 = _pair(arch)
    ens = Ensemble([m1, m2], [3.0, 7.0])  # normalised to 0.3/0.7
    src, mask = random_batch(4, 6, seed=6)
    tgt = torch.randint(4, 50, (4, 5))
    lp = [m(src, mask, tgt).log_softmax(-1) for m in (m1, m2)]
    want = torch.log_softmax(0.3 * lp[0] + 0.7 * lp[1], -1)
    got = ens(src, mask, tgt).log_softmax(-1)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, torch.log_softmax((lp[0] + lp[1]) / 2, -1), atol=1e-3)  # weights matter here
    prob_mean = torch.log(0.3 * lp[0].exp() + 0.7 * lp[1].exp())
    assert not torch.allclose(got, prob_mean, atol=1e-3)
    memory = ens.encode(src, mask)
    assert torch.allclose(ens.decode(tgt, memory, mask).log_softmax(-1), want, atol=1e-5)
    cache = ens.init_cache(memory, mask, 1, tgt.shape[1])
    steps = torch.stack([ens.decode_step(tgt[:, t], cache, t) for t in range(5)], 1)
    assert torch.allclose(steps.log_softmax(-1), want, atol=1e-4)


def test_ensemble_scores_equal_its_search_scores():
    ens = Ensemble(list(_pair({})))
    from mtx.data.batching import collate

    src, mask = random_batch(5, 6, seed=5)
    ids = [src[i][mask[i]].tolist() for i in range(len(src))]
    b = collate(ids)
    for x, hyps in zip(ids, beam_search(ens, b.src, b.src_mask, beam=3, nbest=3), strict=True):
        got = score_ids(ens, [x] * len(hyps), [t for t, _ in hyps], 1.0)
        assert [g.score for g in got] == pytest.approx([s for _, s in hyps], abs=1e-4)


def test_ensemble_cli(tiny_model, tiny_corpus, tmp_path):
    src = tiny_corpus / "test_2016_flickr.de"
    one = run("translate", "--model", tiny_model, "--input", src, "--json")
    two = run("translate", "--model", tiny_model, "--model", tiny_model, "--input", src, "--json")
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    a, b = ([json.loads(x) for x in r.stdout.splitlines()] for r in (one, two))
    assert [x["translation"] for x in a] == [x["translation"] for x in b]
    assert [x["nbest"][0]["score"] for x in a] == pytest.approx([x["nbest"][0]["score"] for x in b], abs=2e-4)
    ev = run("evaluate", "--model", tiny_model, "--model", tiny_model)
    assert ev.exit_code == 0, ev.output
    hyps = (tiny_model / "ensemble.test_2016_flickr.hyp.en").read_text(encoding="utf-8").splitlines()
    assert hyps == [x["translation"] for x in a]  # an ensemble of copies evaluates as the model translates
    ref = tiny_corpus / "test_2016_flickr.en"
    sc1 = run("score", "--model", tiny_model, "--src-file", src, "--ref-file", ref)
    sc = run("score", "--model", tiny_model, "--model", tiny_model, "--src-file", src, "--ref-file", ref)
    assert sc.exit_code == 0 and sc1.exit_code == 0, sc.output
    assert len(sc.stdout.splitlines()) == 20
    assert [float(x) for x in sc.stdout.split()] == pytest.approx([float(x) for x in sc1.stdout.split()], abs=2e-4)
    other = tmp_path / "other"
    other.mkdir()
    for f in tiny_model.iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    text = [x for lang in ("de", "en") for x in (tiny_corpus / f"train.{lang}").read_text(encoding="utf-8").split()]
    text += [x.upper() for x in text]  # another tokenizer of the same size
    (other / "tokenizer.model").write_bytes(Tokenizer.train(iter(text), 100, "unigram", 1.0).proto)
    _one_line_error(run("translate", "Hallo", "--model", tiny_model, "--model", other), 2, "tokenizer is not")
    _one_line_error(run("translate", "x", "--model", tiny_model, "--model", tiny_model, "--engine", "ct2"), 2,
                    "mtx's engine")  # fmt: skip


def test_a_second_model_on_the_first_ones_tokenizer_ensembles_with_it(tiny_model, tiny_corpus, tmp_path):
    sets = ["--set", "train.max_steps=10", "--set", "train.eval_every=10", "--set", "model.d_model=32"]
    r = run("train", "--tokenizer", tiny_model, "--data", tiny_corpus, "--out", tmp_path / "b", "--device", "cpu",
            "--set", "train.seed=7", *sets)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b" / "tokenizer.model").read_bytes() == (tiny_model / "tokenizer.model").read_bytes()
    both = run("translate", "Ein hund rennt.", "--model", tiny_model, "--model", tmp_path / "b")
    assert both.exit_code == 0 and both.stdout.strip(), both.output
