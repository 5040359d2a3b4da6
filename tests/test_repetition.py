"""The options against runaway repetitions (issue 34): no repeated n-gram in any search's output, the CTRL
penalty, outputs without repetitions unchanged, forced prefixes never blocked, both engines, one-line refusals."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import random_batch, random_model
from typer.testing import CliRunner

from mtx.cli.main import app
from mtx.data.tokenizer import BOS, EOS, PAD
from mtx.decode.repetition import Repetition, apply, banned
from mtx.decode.search import Sampling, beam_search, greedy_search, sample_search
from mtx.models.ensemble import Ensemble


def _ngrams(tokens: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _repeats(tokens: list[int], n: int) -> bool:
    grams = _ngrams(tokens, n)
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_banned_is_every_token_that_would_repeat_an_ngram(n):
    g = torch.Generator().manual_seed(n)
    out = torch.randint(4, 9, (30, 12), generator=g)  # few distinct tokens: many repeats
    got = banned(out, n, 10)
    for r, row in enumerate(out.tolist()):
        seen = set(_ngrams(row, n))
        want = {tok for tok in range(10) if tuple((row + [tok])[len(row) + 1 - n :]) in seen}
        assert set(got[r].nonzero()[:, 0].tolist()) == want, (row, n)


def test_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    logits = torch.tensor([[2.0, -2.0, 3.0, -1.0, 0.5]])
    seqs = torch.tensor([[BOS, 0, 1]])  # BOS itself is not output
    out = apply(logits, seqs, Repetition(penalty=2.0))
    assert out.tolist() == [[1.0, -4.0, 3.0, -1.0, 0.5]]
    assert apply(logits, seqs, Repetition()) is logits  # off: untouched
    assert apply(logits, seqs[:, :1], Repetition(3, 2.0)) is logits  # nothing output yet


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_search_output_holds_a_repeated_ngram(n):
    """Untrained models repeat themselves: greedy, beam, n-best, sampling and an ensemble, with the rule on,
    never do (and without it they do, or the test would show nothing)."""
    model = random_model(seed=1)
    src, mask = random_batch(6, 9, seed=2)
    rule = Repetition(no_repeat_ngram=n)
    before = [r[0][0] for r in greedy_search(model, src, mask, 3.0, 10)]
    assert any(_repeats(x, n) for x in before)
    outs = {
        "greedy": greedy_search(model, src, mask, 3.0, 10, repetition=rule),
        "beam": beam_search(model, src, mask, 4, 1.0, 3.0, 10, nbest=4, repetition=rule),
        "uncached": beam_search(model, src, mask, 4, 1.0, 3.0, 10, use_cache=False, repetition=rule),
        "sample": sample_search(model, src, mask, Sampling(draws=3, seed=4), 1.0, 3.0, 10, repetition=rule),
        "ensemble": beam_search(
            Ensemble([model, random_model(seed=5)]).eval(), src, mask, 3, 1.0, 3.0, 10, repetition=rule
        ),  # fmt: skip
    }
    for how, results in outs.items():
        for result in results:
            for tokens, score in result:
                assert not _repeats(tokens, n), (how, tokens)
                assert score > float("-inf")
    for a, b in zip(outs["beam"], outs["uncached"], strict=True):  # the cache changes nothing
        assert a[0][0] == b[0][0] and a[0][1] == pytest.approx(b[0][1], abs=1e-4)


def test_the_options_change_no_greedy_output_without_repetitions(tiny_model, tiny_corpus):
    """Where the plain output holds no repeated n-gram (no token twice, for the penalty), the rules change no token
    of it: the chosen token is never one they act on. (The tiny model's translations repeat nothing.)"""
    from mtx.decode.load import load

    lines = (tiny_corpus / "val.de").read_text().splitlines()[:40]
    plain, _ = load(tiny_model, beam=1, no_repeat_ngram=0)
    base = plain.translate(lines)
    for options, clean in [
        ({"no_repeat_ngram": 2}, lambda x: not _repeats(x, 2)),
        ({"repetition_penalty": 1.5}, lambda x: len(set(x)) == len(x)),
        ({"no_repeat_ngram": 3, "repetition_penalty": 1.3}, lambda x: len(set(x)) == len(x)),
    ]:
        ruled, _ = load(tiny_model, beam=1, **options)
        kept = [i for i, t in enumerate(base) if clean(t.tokens)]
        assert len(kept) >= 10, "too few outputs without repetitions: the test would show little"
        out = [t.tokens for t in ruled.translate([lines[i] for i in kept])]
        assert out == [base[i].tokens for i in kept], options


def test_the_default_is_no_repeated_4_gram():
    from mtx.config import DecodeConfig

    assert (DecodeConfig().no_repeat_ngram, DecodeConfig().repetition_penalty) == (4, 1.0)


def test_off_is_the_plain_search():
    model = random_model(seed=2)
    src, mask = random_batch(5, 7, seed=3)
    plain = beam_search(model, src, mask, 4, 1.0, 2.0, 5, nbest=2)
    assert beam_search(model, src, mask, 4, 1.0, 2.0, 5, nbest=2, repetition=Repetition(0, 1.0)) == plain


def test_a_forced_prefix_is_never_blocked():
    """A prefix that repeats itself comes out whole, scored by the model's own log-probabilities."""
    model = random_model(seed=3)
    src, mask = random_batch(3, 6, seed=1)
    forced = torch.tensor([[7, 7, 7, 8], [9, 10, 9, 10], [11, PAD, PAD, PAD]])
    rule = Repetition(no_repeat_ngram=1, penalty=3.0)
    for results in (greedy_search(model, src, mask, 2.0, 6, forced=forced, repetition=rule),
                    beam_search(model, src, mask, 3, 1.0, 2.0, 6, forced=forced, repetition=rule)):  # fmt: skip
        for r, (result, prefix) in enumerate(zip(results, forced.tolist(), strict=True)):
            prefix = [t for t in prefix if t != PAD]
            tokens, score = result[0]
            assert tokens[: len(prefix)] == prefix and score > float("-inf"), (r, tokens)
            assert EOS not in tokens


@pytest.mark.parametrize("options", [{"no_repeat_ngram": 2}, {"repetition_penalty": 4.0, "no_repeat_ngram": 0}])
def test_ct2_engine_applies_the_same_rules(tmp_path, options):
    """CTranslate2's options of the same names give mtx's greedy outputs on an untrained model."""
    pytest.importorskip("ctranslate2")
    from conftest import make_pairs
    from test_export import _tiny_tokenizer

    from mtx import checkpoint
    from mtx.config import Config, DecodeConfig
    from mtx.data.tokenizer import Tokenizer
    from mtx.decode.ct2 import CT2Translator
    from mtx.decode.export import export_ct2
    from mtx.decode.translator import Translator

    tok = Tokenizer(_tiny_tokenizer(tmp_path).proto)
    model = random_model(seed=3, vocab_size=len(tok))
    with torch.no_grad():
        model.out_bias[:3] = -30.0  # no PAD, UNK or BOS
    cfg = Config()
    cfg.model, cfg.data.max_tokens = model.config, 32
    checkpoint.save(tmp_path / "m", model, tok, cfg)
    export_ct2(tmp_path / "m", tmp_path / "ct2")
    texts = [s for s, _ in make_pairs(12, seed=4)]
    decode = DecodeConfig(beam=1, max_len_a=1.0, max_len_b=5, batch_tokens=1, **options)
    a = [t.text for t in Translator(model, tok, decode, torch.device("cpu")).translate(texts)]
    b = [t.text for t in CT2Translator(tmp_path / "ct2", decode, torch.device("cpu")).translate(texts)]
    plain = DecodeConfig(beam=1, max_len_a=1.0, max_len_b=5, batch_tokens=1, no_repeat_ngram=0)
    c = [t.text for t in Translator(model, tok, plain, torch.device("cpu")).translate(texts)]
    assert a == b and a != c


@pytest.mark.parametrize(
    "args, says",
    [(["--no-repeat-ngram", "-1"], "decode.no_repeat_ngram"), (["--repetition-penalty", "0"], "repetition_penalty")],
)
def test_bad_values_are_refused_in_one_line(tiny_model, args, says):
    r = CliRunner().invoke(app, ["translate", "--model", str(tiny_model), *args, "ein hund"])
    assert r.exit_code != 0 and says in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_translate_with_the_options(tiny_model, tiny_corpus):
    """A sentence whose translation repeats no piece (one the tiny model has learnt: a val line whose reference
    holds no piece twice) translates the same with both options."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tiny_model / "tokenizer.model"))
    pairs = zip(
        *((tiny_corpus / f"val.{x}").read_text(encoding="utf-8").splitlines() for x in ("de", "en")), strict=True
    )
    src, ref = next((s, t) for s, t in pairs if len(set(p := sp.encode(t))) == len(p) > 2)
    options = ["--no-repeat-ngram", "3", "--repetition-penalty", "1.2"]
    r = CliRunner().invoke(app, ["translate", "--model", str(tiny_model), *options, "--json", src])
    assert r.exit_code == 0, r.output
    plain = CliRunner().invoke(app, ["translate", "--model", str(tiny_model), "--no-repeat-ngram", "0", "--json", src])
    assert json.loads(plain.output)["translation"] == ref
    assert json.loads(r.output)["translation"] == ref
