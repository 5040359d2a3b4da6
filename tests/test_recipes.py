"""Building on a model: fine-tuning (--init), sampling, several corpora with tags, scoring, target prefixes."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_SETTINGS, random_batch, random_model, write_corpus
from safetensors.torch import load_file
from test_cli import _one_line_error, run

from mtx.checkpoint import read_config
from mtx.config import build_config
from mtx.data.prepare import prepare_data
from mtx.data.tokenizer import PAD
from mtx.decode.load import load
from mtx.decode.scoring import score_ids
from mtx.decode.search import Sampling, beam_search, greedy_search, sample_search
from mtx.specs import CorpusSpec, parse_corpora, parse_corpus
from mtx.train.plots import read_log


def _model():
    model = random_model(seed=3)
    with torch.no_grad():
        model.out_bias[3] = 1.5  # EOS likely enough that outputs end at different lengths
        model.out_bias[[0, 2]] = -30.0  # PAD and BOS as unlikely as in a trained model (sampling never draws them)
    return model


def _forced(rows: list[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows])


def _rescored(model, src, mask, results, alpha):
    """score_ids of each result's tokens, for the same sources."""
    out = []
    for i, hyps in enumerate(results):
        x = src[i][mask[i]].tolist()[:-1]  # the source ids without EOS (random_batch puts none: keep all but one)
        out.append([s.score for s in score_ids(model, [x] * len(hyps), [t for t, _ in hyps], alpha)])
    return out


def _sources(B=5, S=6, seed=0):
    """Sources ending in EOS, as collate builds them, and their ids without it."""
    src, mask = random_batch(B, S, seed=seed)
    ids = [src[i][mask[i]].tolist() for i in range(B)]
    from mtx.data.batching import collate

    b = collate(ids)
    return b.src, b.src_mask, ids


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_score_equals_the_search_scores(alpha):
    model = _model()
    src, mask, ids = _sources()
    for results in (
        beam_search(model, src, mask, beam=4, alpha=alpha, nbest=4),
        greedy_search(model, src, mask, alpha=alpha),
        sample_search(model, src, mask, Sampling(topk=0, draws=3, seed=5), alpha=alpha),
        beam_search(model, src, mask, beam=3, alpha=alpha, nbest=3, forced=_forced([[7, 8]] * 5)),
    ):
        for x, hyps in zip(ids, results, strict=True):
            got = score_ids(model, [x] * len(hyps), [t for t, _ in hyps], alpha)
            assert [g.score for g in got] == pytest.approx([s for _, s in hyps], abs=1e-4)


def test_forced_prefixes_start_every_output_and_the_search_goes_on():
    model = _model()
    src, mask, _ = _sources(seed=1)
    heads = [[9], [10, 11], [], [12, 13, 14], [5]]
    for results in (
        beam_search(model, src, mask, beam=3, nbest=3, forced=_forced(heads)),
        greedy_search(model, src, mask, forced=_forced(heads)),
        sample_search(model, src, mask, Sampling(topk=5, draws=2), forced=_forced(heads)),
    ):
        for head, hyps in zip(heads, results, strict=True):
            assert all(t[: len(head)] == head for t, _ in hyps)
    # forcing the start of greedy's own output changes nothing (beam search may then find another ending: all
    # its beams extend the prefix)
    free = greedy_search(model, src, mask)
    forced = greedy_search(model, src, mask, forced=_forced([t[:2] for ((t, _),) in free]))
    assert [t for ((t, _),) in forced] == [t for ((t, _),) in free]
    assert [s for ((_, s),) in forced] == pytest.approx([s for ((_, s),) in free], abs=1e-4)


def test_sampling_is_reproducible_by_seed_and_differs_across_seeds():
    model = _model()
    src, mask, _ = _sources(B=6, seed=2)

    def draw(seed, **kw):
        return sample_search(model, src, mask, Sampling(draws=4, seed=seed, **kw))

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)
    assert sample_search(model, src, mask, Sampling(draws=4)) == draw(0)  # the seed is 0 unless given
    assert draw(0) == sample_search(model, src, mask, Sampling(draws=4), alpha=1.0)  # alpha 1, as the searches'
    assert draw(0) != sample_search(model, src, mask, Sampling(draws=4), alpha=0.0)
    assert [len(r) for r in sample_search(model, src, mask, Sampling())] == [1] * 6  # one draw unless asked
    for res in draw(3, topk=3, temperature=2.0):
        assert len(res) == 4 and [s for _, s in res] == sorted((s for _, s in res), reverse=True)
    # topp keeps at least the most likely token: topp close to 0 is greedy
    near_greedy = [[t for t, _ in r] for r in draw(4, topp=1e-6)]
    assert near_greedy == [[t for t, _ in r] * 4 for r in greedy_search(model, src, mask)]
    assert all(len(set(map(tuple, (t for t, _ in r)))) == 1 for r in draw(4, topk=1))


def test_translate_sample_and_prefix_end_to_end(tiny_model, tiny_corpus, tmp_path):
    text = ["Ein hund rennt.", "Eine katze schläft hier."]
    a = run("translate", *text, "--model", tiny_model, "--sample", "topk=0", "--temperature", "3", "--seed", "1",
            "--nbest", "3", "--json")  # fmt: skip
    b = run("translate", *text, "--model", tiny_model, "--sample", "topk=0", "--temperature", "3", "--seed", "1",
            "--nbest", "3", "--json")  # fmt: skip
    c = run("translate", *text, "--model", tiny_model, "--sample", "topk=0", "--temperature", "3", "--seed", "2",
            "--nbest", "3", "--json")  # fmt: skip
    assert a.exit_code == 0, a.output
    assert a.stdout == b.stdout and a.stdout != c.stdout
    assert all(len(json.loads(x)["nbest"]) == 3 for x in a.stdout.splitlines())
    for beam in ("1", "4"):
        r = run("translate", *text, "--model", tiny_model, "--prefix", "Small", "--beam", beam)
        assert r.exit_code == 0, r.output
        assert [x.startswith("Small") for x in r.stdout.splitlines()] == [True, True]
    (tmp_path / "heads").write_text("Blue\n\n", encoding="utf-8")
    (tmp_path / "in").write_text("\n".join(text) + "\n", encoding="utf-8")
    r = run("translate", "--model", tiny_model, "--input", tmp_path / "in", "--prefix-file", tmp_path / "heads")
    assert r.exit_code == 0, r.output
    plain = run("translate", "--model", tiny_model, text[1]).stdout.strip()
    assert r.stdout.splitlines()[0].startswith("Blue") and r.stdout.splitlines()[1] == plain
    (tmp_path / "heads").write_text("Blue\n", encoding="utf-8")
    bad = run("translate", "--model", tiny_model, "--input", tmp_path / "in", "--prefix-file", tmp_path / "heads")
    _one_line_error(bad, 2, "1 prefixes for 2 input lines")
    _one_line_error(run("translate", "x", "--model", tiny_model, "--sample", "top5"), 2, "expected topk=K or topp=P")


def test_score_command_equals_translate_scores(tiny_model, tiny_corpus, tmp_path):
    src = tiny_corpus / "test_2016_flickr.de"
    out = run("translate", "--model", tiny_model, "--input", src, "--json", "--beam", "4")
    assert out.exit_code == 0, out.output
    recs = [json.loads(x) for x in out.stdout.splitlines()]
    (tmp_path / "hyp").write_text("".join(r["translation"] + "\n" for r in recs), encoding="utf-8")
    scored = run("score", "--model", tiny_model, "--src-file", src, "--ref-file", tmp_path / "hyp", "--json")
    assert scored.exit_code == 0, scored.output
    got = [json.loads(x) for x in scored.stdout.splitlines()]
    assert [g["score"] for g in got] == pytest.approx([r["nbest"][0]["score"] for r in recs], abs=2e-4)
    refs = run("score", "--model", tiny_model, "--src-file", src, "--ref-file", tiny_corpus / "test_2016_flickr.en")
    rows = [tuple(map(float, x.split("\t"))) for x in refs.stdout.splitlines()]
    assert len(rows) == 20 and all(s <= 0 and lp <= s for s, lp in rows)  # penalty >= 1 for alpha 1
    _one_line_error(run("score", "--model", tiny_model, "--src-file", src, "--ref-file", tiny_corpus / "train.en"),
                    1, "files are not aligned")  # fmt: skip


def test_corpus_specs():
    assert parse_corpus("a,b/c,tag=bt,weight=0.5") == CorpusSpec("a,b/c", 0.5, "bt")
    assert parse_corpora("x + y,weight=2") == [CorpusSpec("x"), CorpusSpec("y", 2.0)]
    assert str(CorpusSpec("y", 2.0, "bt")) == "y,weight=2,tag=bt"
    for bad in ("x,weight=0", "x,weight=nan", "x,tag=<bt>", ",tag=bt", "x,tag=a,tag=b"):
        with pytest.raises(ValueError):
            parse_corpus(bad)
    with pytest.raises(ValueError):
        parse_corpora("x + x")


def test_two_corpora_with_a_tag_and_a_weight(tmp_path, logs):
    real = write_corpus(tmp_path / "real", {"train": 60, "val": 10})
    synth = write_corpus(tmp_path / "synth", {"train": 40}, seed=5)
    cfg = build_config(None, [*TINY_SETTINGS, f"data.path={real} + {synth},tag=bt,weight=2"])
    data = prepare_data(cfg, cfg.data.path)
    bt = data.tokenizer.piece_id("<bt>")
    src = data.train.collate(range(len(data.train))).src
    assert int((src[:, 0] == bt).sum()) == 40 and (src[:, 1:] != bt).all()  # the tag once, on the 40 synthetic
    assert [v.prefix for v in data.valid] == [[]] and len(data.valid[0].src) == 10  # validation: the real val
    drawn = np.concatenate(data.train.epoch(0))
    assert len(drawn) == 60 + 2 * 40 and int((drawn >= 60).sum()) == 80  # weight 2: each synthetic pair twice
    assert any("weight=2,tag=bt de-en 40 x 2.00" in x for x in logs), logs
    # neither corpus has a validation split: each holds some of its pairs out
    other = write_corpus(tmp_path / "other", {"train": 50}, seed=9)
    cfg = build_config(None, [*TINY_SETTINGS, f"data.path={synth} + {other}"])
    data = prepare_data(cfg, cfg.data.path)
    assert [len(v.src) for v in data.valid] == [4, 5] and len(data.train) == 81


def test_train_with_two_corpora_end_to_end(tmp_path):
    real = write_corpus(tmp_path / "real", {"train": 60, "val": 10, "test_2016_flickr": 10})
    synth = write_corpus(tmp_path / "synth", {"train": 40}, seed=5)
    sets = [x for s in [*TINY_SETTINGS, "train.max_steps=20", "train.eval_every=20"] for x in ("--set", s)]
    r = run("train", "--data", real, "--data", f"{synth},tag=bt", "--out", tmp_path / "m", "--device", "cpu", *sets)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "m" / "data.json").read_text())
    assert report["corpus"] == f"{real} + {synth},tag=bt" and len(report["pairs"]) == 2
    ev = run("evaluate", "--model", tmp_path / "m")  # the first corpus' test split
    assert ev.exit_code == 0 and "10 sentences" in ev.output, ev.output


def test_init_starts_at_step_0_with_the_models_weights_and_a_fresh_optimizer(tiny_model, tiny_corpus, tmp_path):
    out = tmp_path / "ft"
    sets = ["--set", "train.max_steps=8", "--set", "train.eval_every=8", "--set", "train.lr=1e-12"]
    r = run("train", "--init", tiny_model, "--data", tiny_corpus, "--out", out, "--device", "cpu", *sets)
    assert r.exit_code == 0, r.output
    _, evals = read_log(out)
    assert [x["step"] for x in evals] == [8]
    kept = read_config(tiny_model)[1]  # the checkpoint's meta: the kept step's validation
    assert evals[-1]["valid_loss"] == pytest.approx(kept["valid_loss"], rel=1e-3)  # lr ~0: the model's own weights
    latest = out / (out / "latest").read_text().strip()
    assert json.loads((latest / "state.json").read_text())["step"] == 8
    steps = {k: v for k, v in load_file(str(latest / "state.safetensors")).items() if k.endswith(".step")}
    assert steps and all(float(v) == 8 for v in steps.values())  # Adam's count from 0, not the model's 600
    shown = run("info", "--model", out)
    assert f"started from: {tiny_model}" in shown.stdout
    translator, _ = load(out, device="cpu")
    same, _ = load(tiny_model, device="cpu")
    assert translator.tokenizer.proto == same.tokenizer.proto


def test_init_refusals(tiny_model, tiny_corpus, tmp_path):
    args = ("train", "--init", tiny_model, "--data", tiny_corpus, "--device", "cpu")
    _one_line_error(run(*args, "--out", tmp_path / "a", "--set", "model.d_model=32"), 2, "model.d_model is 64")
    _one_line_error(run(*args[:4], f"{tiny_corpus},tag=bt", "--out", tmp_path / "b"), 2, "has no <bt>")
    _one_line_error(run(*args, "--out", tiny_model), 2, "elsewhere")
    _one_line_error(run(*args, "--out", tmp_path / "c", "--resume", tiny_model), 2, "give one of them")


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sampling_draws_from_the_softmax_at_the_temperature(temperature):
    """The share of each token among many draws is the softmax of the log-probabilities divided by T (so T -> 0 is
    greedy and a high T flattens the distribution)."""
    from mtx.decode.search import Sampling, sample_tokens

    logp = torch.tensor([[0.0, -0.5, -1.0, -2.0, -3.0, -1.5]]).log_softmax(-1)
    rows = logp.expand(20000, -1).clone()
    g = torch.Generator().manual_seed(0)
    drawn = sample_tokens(rows, Sampling(temperature=temperature), g)
    got = torch.bincount(drawn, minlength=6).float() / len(drawn)
    want = (logp[0] / temperature).clone()
    want[[0, 2]] = float("-inf")  # PAD and BOS are never drawn: their share goes to the others
    want = want.softmax(-1)
    assert (got - want).abs().sum() < 0.03, (got, want)
    cold = sample_tokens(logp.expand(500, -1).clone(), Sampling(temperature=0.01), g)
    assert bool((cold == (logp[0].clone().index_fill(0, torch.tensor([0, 2]), -1e9)).argmax()).all())


def test_score_lines_cut_over_long_sides_and_print_four_decimals(tiny_model, tmp_path):
    """A side longer than the model's positions is scored as its first max_len - 1 pieces (EOS makes max_len);
    alpha defaults to 1; `mtx score` prints score and log-probability with four decimals, as text or JSON."""
    from mtx import checkpoint
    from mtx.decode.scoring import score_files, score_lines

    model, tok, cfg, _ = checkpoint.load(tiny_model)
    limit = cfg.model.max_len - 1
    long_src = " ".join(["Ein Hund rennt hier."] * 80)
    long_tgt = " ".join(["A dog runs here."] * 80)
    src_ids, tgt_ids = tok.encode([long_src])[0], tok.encode([long_tgt])[0]
    assert len(src_ids) > limit and len(tgt_ids) > limit
    (got,) = score_lines(model, tok, [(long_src, long_tgt)])
    (want,) = score_ids(model, [src_ids[:limit]], [tgt_ids[:limit]], 1.0)
    assert (got.tokens, got.logprob, got.score) == (limit + 1, pytest.approx(want.logprob, abs=1e-4),
                                                    pytest.approx(want.score, abs=1e-4))  # fmt: skip
    pairs = [("Ein Hund rennt.", "A dog runs."), ("Zwei Katzen.", "Two cats.")]
    (tmp_path / "s").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (tmp_path / "r").write_text("".join(r + "\n" for _, r in pairs), encoding="utf-8")
    scores = list(score_lines(model, tok, pairs, alpha=1.0))
    text = list(score_files(tiny_model, tmp_path / "s", tmp_path / "r", "cpu"))
    assert text == [f"{s.score:.4f}\t{s.logprob:.4f}" for s in scores]
    js = [json.loads(x) for x in score_files(tiny_model, tmp_path / "s", tmp_path / "r", "cpu", as_json=True)]
    assert js == [{"score": round(s.score, 4), "logprob": round(s.logprob, 4), "tokens": s.tokens} for s in scores]


@pytest.mark.parametrize(
    "settings, kept",
    [({"topk": 2}, [1, 5]), ({"topk": 3, "temperature": 2.0}, [1, 5, 3]), ({"topp": 0.85}, [1, 5, 3]),
     ({"topp": 0.7}, [1, 5]), ({"topp": 0.5}, [1]), ({"topk": 9}, [1, 5, 3, 4])],
)  # fmt: skip
def test_top_k_and_top_p_draw_from_the_renormalised_head_of_the_distribution(settings, kept):
    """Tokens 1, 5, 3, 4 in order of probability (PAD 0 and BOS 2 never drawn): 0.598, 0.220, 0.133, 0.049. top-k
    keeps the k most likely, top-p the fewest whose probabilities reach p; each drawn in proportion."""
    from mtx.decode.search import Sampling, sample_tokens

    logp = torch.tensor([[0.0, -0.5, -1.0, -2.0, -3.0, -1.5]]).log_softmax(-1)
    g = torch.Generator().manual_seed(1)
    s = Sampling(**settings)
    drawn = sample_tokens(logp.expand(20000, -1).clone(), s, g)
    got = torch.bincount(drawn, minlength=6).float() / len(drawn)
    want = torch.full((6,), float("-inf"))
    want[kept] = logp[0, kept] / s.temperature
    want = want.softmax(-1)
    assert (got - want).abs().sum() < 0.03, (got, want)


def test_plain_sampling_is_one_multinomial_draw_over_the_whole_distribution():
    """No top-k, no top-p: the token is torch.multinomial's draw over the softmax, PAD and BOS left out, with the
    same random numbers (so a seed gives the samples of any sampler built the same way)."""
    from mtx.decode.search import Sampling, sample_tokens

    logp = torch.randn(50, 12, generator=torch.Generator().manual_seed(3)).log_softmax(-1)
    got = sample_tokens(logp.clone(), Sampling(), torch.Generator().manual_seed(9))
    p = logp.exp()
    p[:, [0, 2]] = 0
    want = torch.multinomial(p / p.sum(1, keepdim=True), 1, generator=torch.Generator().manual_seed(9))[:, 0]
    assert torch.equal(got, want)
