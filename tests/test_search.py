"""Search properties: cached == uncached, beam 1 == greedy, batch == one at a time, n-best, edge cases."""

import pytest
import torch
from conftest import random_batch, random_model

from mtx.search import beam_search, greedy_search


def _model():
    # Larger output scale makes the untrained model's distributions peaked, so hypotheses differ in length.
    model = random_model(seed=1)
    with torch.no_grad():
        model.out_bias[3] = 2.0  # EOS likely enough that beams finish at different steps
    return model


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert [t for t, _ in x] == [t for t, _ in y]
        for (_, s1), (_, s2) in zip(x, y, strict=True):
            assert s1 == pytest.approx(s2, abs=1e-4)


def test_greedy_cached_equals_uncached():
    model = _model()
    src, mask = random_batch(6, 7)
    _same(greedy_search(model, src, mask, use_cache=True), greedy_search(model, src, mask, use_cache=False))


@pytest.mark.parametrize("beam", [2, 5])
def test_beam_cached_equals_uncached(beam):
    model = _model()
    src, mask = random_batch(6, 7, seed=2)
    a = beam_search(model, src, mask, beam=beam, nbest=beam, use_cache=True)
    b = beam_search(model, src, mask, beam=beam, nbest=beam, use_cache=False)
    _same(a, b)


def test_beam_one_equals_greedy():
    model = _model()
    src, mask = random_batch(8, 6, seed=4)
    greedy = greedy_search(model, src, mask)
    beam = beam_search(model, src, mask, beam=1, alpha=0.0)
    _same(beam, greedy)


def test_batch_equals_one_at_a_time():
    model = _model()
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
