"""Search properties: cached == uncached, beam 1 == greedy, batch == one at a time, n-best, edge cases."""

import math

import pytest
import torch
from conftest import ARCH_IDS, ARCHS, random_batch, random_model

from mtx.config import ModelConfig
from mtx.decode.search import beam_search, greedy_search, length_penalty


def _model(arch=None):
    # Larger output scale makes the untrained model's distributions peaked, so hypotheses differ in length.
    model = random_model(seed=1, **(arch or {}))
    with torch.no_grad():
        model.out_bias[3] = 2.0  # EOS likely enough that beams finish at different steps
    return model


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert [t for t, _ in x] == [t for t, _ in y]
        for (_, s1), (_, s2) in zip(x, y, strict=True):
            assert s1 == pytest.approx(s2, abs=1e-4)


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_greedy_cached_equals_uncached(arch):
    model = _model(arch)
    src, mask = random_batch(6, 7)
    _same(greedy_search(model, src, mask, use_cache=True), greedy_search(model, src, mask, use_cache=False))


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
@pytest.mark.parametrize("beam", [2, 5])
def test_beam_cached_equals_uncached(beam, arch):
    model = _model(arch)
    src, mask = random_batch(6, 7, seed=2)
    a = beam_search(model, src, mask, beam=beam, nbest=beam, use_cache=True)
    b = beam_search(model, src, mask, beam=beam, nbest=beam, use_cache=False)
    _same(a, b)


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_one_equals_greedy(alpha, arch):
    """The same hypotheses and the same scores: one score definition for every beam size."""
    model = _model(arch)
    src, mask = random_batch(8, 6, seed=4)
    greedy = greedy_search(model, src, mask, alpha=alpha)
    beam = beam_search(model, src, mask, beam=1, alpha=alpha)
    _same(beam, greedy)


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_batch_equals_one_at_a_time(arch):
    model = _model(arch)
    src, mask = random_batch(5, 8, seed=5)
    batched = beam_search(model, src, mask, beam=4, nbest=2)
    for i in range(5):
        n = int(mask[i].sum())
        alone = beam_search(model, src[i : i + 1, :n], mask[i : i + 1, :n], beam=4, nbest=2)
        _same(alone, batched[i : i + 1])


def test_nbest_sorted_and_distinct():
    model = _model()
    src, mask = random_batch(4, 6, seed=6)
    for hyps in beam_search(model, src, mask, beam=5, nbest=5):
        scores = [s for _, s in hyps]
        assert len(hyps) == 5
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(t) for t, _ in hyps}) == len(hyps)


def test_beam_score_is_normalised_log_probability():
    """The reported score equals the model's log-probability of the output, over the length penalty."""
    model = _model()
    src, mask = random_batch(1, 5, seed=7)
    (hyps,) = beam_search(model, src, mask, beam=3, alpha=1.0, nbest=3)
    memory = model.encode(src, mask)
    for tokens, score in hyps:
        seq = torch.tensor([[2] + tokens + [3]])
        logp = torch.log_softmax(model.decode(seq[:, :-1], memory, mask), -1)[0]
        total = logp.gather(1, seq[0, 1:, None]).sum().item()
        assert score == pytest.approx(total / ((5 + len(tokens) + 1) / 6), abs=1e-4)


def test_one_token_source_and_output_limit():
    model = _model()
    src = torch.tensor([[7]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    (hyps,) = beam_search(model, src, mask, beam=3, max_len_a=1.0, max_len_b=2)
    assert all(len(t) + 1 <= 3 for t, _ in hyps)  # EOS included, a * 1 + b tokens at most
    (g,) = greedy_search(model, src, mask, max_len_a=0.0, max_len_b=1)
    assert g[0][0] == []  # forced EOS at the limit


def test_source_at_max_length_does_not_overflow_positions():
    model = random_model(max_len=16)
    src, mask = random_batch(2, 16)
    for res in beam_search(model, src, mask, beam=2, max_len_a=2.0, max_len_b=10):
        assert len(res[0][0]) < 16
    for res in greedy_search(model, src, mask, max_len_a=2.0, max_len_b=10):
        assert len(res[0][0]) < 16


def _exhaustive(model, src, mask, limit, alpha):
    """Every output the search could produce (any non-EOS tokens, then EOS; EOS forced at `limit` tokens),
    scored by the model: [(score, tokens)], best first."""
    V = model.config.vocab_size
    memory = model.encode(src, mask)
    words = [v for v in range(V) if v != 3]
    found = []
    prefixes = [[]]
    for n in range(limit):  # n tokens before EOS
        for prefix in prefixes:
            seq = torch.tensor([[2, *prefix, 3]])
            logp = torch.log_softmax(model.decode(seq[:, :-1], memory, mask).float(), -1)[0]
            total = logp.gather(1, seq[0, 1:, None]).sum().item()
            found.append((total / length_penalty(n + 1, alpha), prefix))
        prefixes = [p + [w] for p in prefixes for w in words]
    return sorted(found, key=lambda x: -x[0])


@pytest.mark.parametrize("arch", ARCHS[:2], ids=ARCH_IDS[:2])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_finds_the_exhaustive_best(alpha, arch):
    """On a vocabulary of 6 and outputs of at most 4 tokens (EOS included), a beam as wide as the search space
    returns exactly the exhaustive search's best hypotheses, with their scores; a narrow beam never reports a
    score above the true best."""
    torch.manual_seed(3)
    model = random_model(seed=3, vocab_size=6, d_model=16, n_heads=2, d_ff=32, **arch)
    with torch.no_grad():
        model.out_bias[3] = 1.0
    for seed in range(3):
        src, mask = random_batch(1, 4, vocab=6, seed=seed)
        best = _exhaustive(model, src, mask, limit=4, alpha=alpha)
        K = 5**3  # live prefixes of 3 tokens: the beam never prunes
        (wide,) = beam_search(model, src, mask, K, alpha, max_len_a=0.0, max_len_b=4, nbest=5, stop="exact")
        assert [t for t, _ in wide] == [t for _, t in best[:5]]
        assert [s for _, s in wide] == pytest.approx([s for s, _ in best[:5]], abs=1e-4)
        (narrow,) = beam_search(model, src, mask, beam=2, alpha=alpha, max_len_a=0.0, max_len_b=4)
        assert narrow[0][1] <= best[0][0] + 1e-5


def _reference_beam(model, src, mask, K, alpha, limit, nbest):
    """Beam search as the batched one does it, one sentence and one prefix at a time, without early stopping:
    it only ends when no live hypothesis is left or at the length limit."""
    memory = model.encode(src, mask)
    live, finished = [([], 0.0)], []
    for t in range(limit):
        cands = []
        for prefix, score in live:
            seq = torch.tensor([[2, *prefix]])
            logp = torch.log_softmax(model.decode(seq, memory, mask)[0, -1].float(), -1)
            for v in [3] if t + 1 >= limit else range(model.config.vocab_size):
                cands.append((score + logp[v].item(), prefix + [v]))
        cands.sort(key=lambda c: -c[0])
        finished += [(s / length_penalty(t + 1, alpha), p[:-1]) for s, p in cands[:K] if p[-1] == 3]
        live = [(p, s) for s, p in cands[: 2 * K] if p[-1] != 3][:K]
        if not live:
            break
    finished.sort(key=lambda f: -f[0])
    return finished[:nbest]


@pytest.mark.parametrize("arch", ARCHS[:2], ids=ARCH_IDS[:2])
@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0])
def test_early_stopping_never_changes_the_result(alpha, arch):
    """Batched beam search with `stop="exact"`, which drops a sentence once no live beam can beat its K-th
    finished hypothesis, returns what searching on to the length limit returns."""
    model = random_model(seed=5, vocab_size=8, d_model=16, n_heads=2, d_ff=32, **arch)
    with torch.no_grad():
        model.out_bias[3] = 1.5  # hypotheses finish early and often: the stopping rule is exercised
    for seed in range(6):
        src, mask = random_batch(1, 5, vocab=8, seed=seed)
        want = _reference_beam(model, src, mask, K=3, alpha=alpha, limit=7, nbest=3)
        (got,) = beam_search(model, src, mask, 3, alpha, max_len_a=0.0, max_len_b=7, nbest=3, stop="exact")
        assert [t for t, _ in got] == [t for _, t in want]
        assert [s for _, s in got] == pytest.approx([s for s, _ in want], abs=1e-4)


class _Scripted(torch.nn.Module):
    """A 'model' whose next-token log-probabilities depend only on the position: at the first, EOS 0.905 and
    token 5 0.095; then token 4 almost surely; EOS at `eos_at`. Its cache only follows the search's reordering."""

    def __init__(self, eos_at: int):
        super().__init__()
        self.config = ModelConfig(vocab_size=6, max_len=64)
        self.eos_at = eos_at

    def encode(self, src, src_mask):
        return torch.zeros(*src.shape, 1)

    def init_cache(self, memory, src_mask, beam, max_steps):
        return self

    def reorder(self, rows, sents=None):
        pass

    def decode_step(self, tokens, cache, t):
        logits = torch.full((tokens.shape[0], 6), -30.0)
        if t == 0:
            logits[:, 3], logits[:, 5] = math.log(0.905), math.log(0.095)
        else:
            logits[:, 3 if t == self.eos_at else 4] = 0.0
        return logits


def test_early_stopping_waits_for_a_long_hypothesis_the_length_penalty_favours():
    """With alpha 3, a hypothesis that is still live after a likely EOS can overtake it by growing longer:
    log 0.095 / ((5 + 20) / 6) ** 3 = -0.033 beats log 0.905 / 1 = -0.1. `stop="exact"` divides the live beam's
    score by the largest penalty it can reach (its length limit) and waits for it; `stop="current"` (the
    default) divides by the next step's, and with one beam returns the short hypothesis at once."""
    src, mask = torch.tensor([[7]]), torch.tensor([[True]])
    for beam in (1, 2):
        ((tokens, score),) = beam_search(_Scripted(eos_at=19), src, mask, beam=beam, alpha=3.0, max_len_a=0.0,
                                          max_len_b=20, stop="exact")[0][:1]  # fmt: skip
        assert tokens == [5] + [4] * 18
        assert score == pytest.approx(math.log(0.095) / (25 / 6) ** 3, abs=1e-4)
    ((tokens, score),) = beam_search(_Scripted(eos_at=19), src, mask, beam=1, alpha=3.0, max_len_a=0.0,
                                      max_len_b=20)[0][:1]  # fmt: skip
    assert tokens == [] and score == pytest.approx(math.log(0.905), abs=1e-4)


@pytest.mark.parametrize("V", [6, 64 * 9, 64 * 9 + 7, 8000])
def test_block_argmax_and_topk_equal_torch(V):
    """best_tokens and top_tokens, searched block by block, give argmax's and topk's answers: on random rows,
    with the best value in the last, short block, and with equal maxima (argmax's first one)."""
    from mtx.decode.fastk import best_tokens, top_tokens

    g = torch.Generator().manual_seed(V)
    x = torch.randn(40, V, generator=g)
    x[0, -1] = 10.0  # the best in the tail
    x[1, 3] = x[1, V - 2] = 11.0  # equal maxima: the first one wins
    x[2] = 0.0  # all equal
    assert torch.equal(best_tokens(x), x.argmax(dim=1))
    values, cols = top_tokens(x[3:], 10 if V > 10 else 3)
    want_values, _ = x[3:].topk(values.shape[1], dim=1)
    assert torch.equal(values, want_values)
    assert torch.equal(x[3:].gather(1, cols), values)  # the columns hold those values
    assert all(len(set(row)) == len(row) for row in cols.tolist())  # no column twice


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0])
def test_current_stopping_returns_valid_hypotheses_no_later_than_exact(alpha):
    """`stop="current"` (the default) ends each sentence no later than `stop="exact"`: on a batch of random
    sentences it makes at most as many decoder calls, and returns K sorted, distinct, properly scored
    hypotheses per sentence."""
    model = random_model(seed=5, vocab_size=8, d_model=16, n_heads=2, d_ff=32)
    with torch.no_grad():
        model.out_bias[3] = 1.5

    calls = {}
    inner = model.decode_step

    def counting(tokens, cache, t):
        calls[mode] += tokens.shape[0]
        return inner(tokens, cache, t)

    model.decode_step = counting
    src, mask = random_batch(6, 5, vocab=8, seed=1)
    out = {}
    for mode in ("exact", "current"):
        calls[mode] = 0
        out[mode] = beam_search(model, src, mask, 3, alpha, max_len_a=0.0, max_len_b=9, nbest=3, stop=mode)
    assert calls["current"] <= calls["exact"]
    for hyps in out["current"]:
        scores = [s for _, s in hyps]
        assert len(hyps) == 3 and scores == sorted(scores, reverse=True)
        assert len({tuple(t) for t, _ in hyps}) == 3


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("arch", ARCHS[:2], ids=ARCH_IDS[:2])
def test_on_done_reports_each_sentence_once_with_its_result(beam, arch):
    """`on_done` hears of every sentence of the batch exactly once, as its search ends (sentences of different
    lengths end at different steps), with the result the search returns for it."""
    from mtx.decode.search import search

    model = random_model(seed=2, vocab_size=12, **arch)
    with torch.no_grad():
        model.out_bias[3] = 1.0  # outputs end at various steps
    src, mask = random_batch(8, 6, vocab=12, seed=4)
    calls: list[tuple[list[int], list]] = []
    got = search(model, src, mask, beam, 1.0, 1.5, 5, nbest=1, on_done=lambda r, res: calls.append((r, res)))
    seen = [i for rows, _ in calls for i in rows]
    assert sorted(seen) == list(range(8))
    for rows, results in calls:
        for i, res in zip(rows, results, strict=True):
            assert res == got[i]


def test_translator_on_sentence_reports_every_line_once(tiny_model, tiny_corpus):
    from mtx import checkpoint
    from mtx.decode.translator import Translator

    model, tok, cfg, _ = checkpoint.load(tiny_model, torch.device("cpu"))
    lines = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:12] + [""]
    tr = Translator(model, tok, cfg.decode, torch.device("cpu"))
    heard: list[tuple[int, str]] = []
    want = [t.text for t in tr.translate(lines, on_sentence=lambda i, t: heard.append((i, t.text)))]
    assert sorted(heard) == list(enumerate(want))  # each line once, with its translation


@pytest.mark.parametrize("beam", [1, 3])
def test_dropped_sentences_leave_the_search_at_the_next_step_and_the_rest_is_unchanged(beam):
    """A server's client gone: its rows leave the running search at once (issue 31, item 9); every other
    sentence gets the result it would have got, and no step decodes a dropped row again."""
    from mtx.decode.search import search

    model = _model()
    model.config.max_len = 64
    src, mask = random_batch(6, 7)
    want = search(model, src, mask, beam, 1.0, 4.0, 20)
    steps, asked = [], []

    def drop() -> list[int]:
        asked.append(1)
        return [1, 4] if len(asked) >= 2 else []

    real = model.decode_step

    def counted(tokens, cache, t):
        steps.append(tokens.shape[0])
        return real(tokens, cache, t)

    model.decode_step = counted
    got = search(model, src, mask, beam, 1.0, 4.0, 20, drop=drop)
    _same([got[i] for i in (0, 2, 3, 5)], [want[i] for i in (0, 2, 3, 5)])  # equal up to the batch's rounding
    assert all(n <= 4 * beam for n in steps[2:])  # from the third step on, the two dropped rows are gone


def test_output_length_limits_and_the_length_penalty():
    """a * source length + b, rounded up, at least 1 and at most the limit; at least one more than a forced
    prefix. GNMT's penalty ((5 + n) / 6) ** alpha."""
    from mtx.decode.search import max_lengths

    mask = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert max_lengths(mask, 1.5, 2, 8).tolist() == [4, 7, 8]  # 3.5, 6.5, 9.5: up, up, and cut to 8
    assert max_lengths(mask, 0.5, 0, 8).tolist() == [1, 2, 3]  # 0.5, 1.5, 2.5
    assert max_lengths(mask, 0.0, 0, 8).tolist() == [1, 1, 1]  # never below one (EOS)
    forced = torch.tensor([[5, 6, 7, 8, 9], [5, 0, 0, 0, 0], [0, 0, 0, 0, 0]])  # prefixes of 5, 1 and 0 pieces
    assert max_lengths(mask, 1.5, 2, 8, forced).tolist() == [6, 7, 8]
    assert max_lengths(mask, 0.0, 0, 4, forced).tolist() == [4, 2, 1]  # the limit holds over a long prefix
    assert length_penalty(5, 1.0) == pytest.approx(10 / 6) and length_penalty(7, 0.0) == 1.0
    assert length_penalty(torch.tensor([1.0, 13.0]), 0.5).tolist() == pytest.approx([1.0, math.sqrt(3)])


def test_a_forced_token_is_the_only_one_left_and_keeps_the_models_log_probability():
    from mtx.decode.repetition import Repetition
    from mtx.decode.search import force, next_logp

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 10, generator=g) * 3
    logp = logits.log_softmax(-1)
    forced = torch.tensor([[4, 5], [0, 6], [7, 0]])  # sentence 0: 4 then 5; 1: nothing, then 6; 2: 7, then nothing
    rows = torch.tensor([0, 1, 2])
    inf = float("-inf")
    for t, want in ((0, {0: 4, 2: 7}), (1, {0: 5, 1: 6})):
        out = force(logp.clone(), forced, rows, t)
        for r in range(3):
            if r in want:
                expect = torch.full((10,), inf)
                expect[want[r]] = logp[r, want[r]]
                assert torch.equal(out[r], expect), (t, r)
            else:
                assert torch.equal(out[r], logp[r]), (t, r)
    assert torch.equal(force(logp, forced, rows, 2), logp) and torch.equal(force(logp, None, rows, 0), logp)
    other = torch.tensor([2, 2, 0])  # each row's sentence: rows 0 and 1 are sentence 2's, row 2 sentence 0's
    out = force(logp, forced, other, 0)
    assert [int(r.isfinite().nonzero()) for r in out] == [7, 7, 4]
    model = torch.zeros(3, 10)
    assert force(logp, forced, rows, 0, model)[0, 4] == 0.0  # the given log-probabilities are the forced token's

    # next_logp: the repetition penalty changes the distribution; a forced token keeps the model's own value
    seqs = torch.tensor([[2, 4, 9], [2, 6, 9], [2, 7, 9]])  # BOS, then an output with the token forced next
    rule = Repetition(no_repeat_ngram=0, penalty=2.0)
    penalised = logits.clone()
    for r, seen in enumerate(seqs[:, 1:].tolist()):
        for tok in set(seen):
            penalised[r, tok] = logits[r, tok] / 2 if logits[r, tok] > 0 else logits[r, tok] * 2
    for t in (0, 1):
        got = next_logp(logits.clone(), seqs, forced, rows, t, rule)
        free = penalised.log_softmax(-1)
        for r in range(3):
            tok = forced[r, t].item()
            if tok:
                assert got[r, tok] == pytest.approx(logp[r, tok].item(), abs=1e-6)
                assert got[r].isfinite().sum() == 1
            else:
                assert torch.allclose(got[r], free[r], atol=1e-6)
    mine = logits.clone()
    got = next_logp(mine, seqs, None, rows, 0, rule, own=True)
    assert torch.allclose(got, penalised.log_softmax(-1), atol=1e-6)
    kept = logits.clone()
    next_logp(kept, seqs, None, rows, 0, Repetition(no_repeat_ngram=1))  # a rule that can work in place
    assert torch.equal(kept, logits)  # not its own: left as it was
