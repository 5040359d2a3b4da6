"""Lexically constrained search (issue 34): every output of greedy, beam, n-best, sampling and an ensemble holds
every constraint whole, where the plain search does not; the bookkeeping is sound; the cache changes nothing;
no constraints is the plain beam; scores are the model's."""

from __future__ import annotations

import pytest
import torch
from conftest import random_batch, random_model

from mtx.data.batching import collate
from mtx.decode.constraints import Constraints, State, advance, allocate, counts
from mtx.decode.scoring import score_ids
from mtx.decode.search import Sampling, beam_search, search
from mtx.models.ensemble import Ensemble


def holds(tokens: list[int], term: list[int]) -> bool:
    """`term` is a contiguous run of `tokens`."""
    return any(tokens[i : i + len(term)] == term for i in range(len(tokens) - len(term) + 1))


def test_state_is_sound_and_counts_agree_with_advance():
    """Over random outputs (few distinct tokens, so that constraints start, break off and restart): where the state
    says every position is met, every constraint is in the output, each apart; and `counts` gives, for every
    candidate token, the positions `advance` then has met."""
    g = torch.Generator().manual_seed(0)
    terms = [[[5, 6], [7]], [[5, 6, 5], [6, 7]], [[8, 8]], [[5], [5, 6]]]
    c = Constraints.build(terms)
    rows = len(terms)
    seen_done = 0
    for _ in range(60):
        s = State.empty(rows, c.tok.shape[1], "cpu")
        out = torch.randint(4, 9, (rows, 12), generator=g)
        for t in range(out.shape[1]):
            cands = torch.arange(4, 9).expand(rows, -1)
            want = counts(s, c, cands)
            for j in range(cands.shape[1]):
                assert torch.equal(advance(s, c, cands[:, j]).met.sum(1), want[:, j])
            s = advance(s, c, out[:, t])
            for r in range(rows):
                if int(s.unmet(c)[r]) == 0:
                    seen_done += 1
                    prefix = out[r, : t + 1].tolist()
                    assert all(holds(prefix, term) for term in terms[r]), (prefix, terms[r])
    assert seen_done > 0


def test_allocate_takes_banks_in_turns_fullest_first():
    scores = torch.tensor([[-1.0, -2.0, -3.0, -4.0, -5.0, float("-inf")]])
    banks = torch.tensor([[0, 0, 0, 1, 2, 2]])
    assert allocate(scores, banks, 6).tolist() == [[4, 3, 0, 1, 2, 5]]
    # a bank with one candidate leaves its turns: bank 0's others follow in score order
    assert allocate(scores, torch.tensor([[0, 0, 0, 0, 1, 0]]), 3).tolist() == [[4, 0, 1]]


def test_the_search_gives_allocate_every_bank(monkeypatch):
    """The bank count the search passes (so that allocate needs no host sync) covers every bank it meets, the
    one of rows that met all their constraint tokens included: allocating with it equals allocating without."""
    import mtx.decode.constraints as C

    seen = []

    def checked(scores, banks, n, nb=None):
        got = allocate(scores, banks, n, nb)
        seen.append(int(banks.max()))
        assert nb is not None and torch.equal(got, allocate(scores, banks, n)), (nb, int(banks.max()))
        return got

    monkeypatch.setattr(C, "allocate", checked)
    model = random_model(seed=1)
    b = collate([row[m].tolist() for row, m in zip(*random_batch(4, 9, seed=2), strict=True)])
    terms = [[[7, 8]], [[9]], [[10, 11, 12], [13]], [[14]]]
    beam_search(model, b.src, b.src_mask, 6, 1.0, 1.5, 12, constraints=Constraints.build(terms))
    assert max(seen) == 4  # a bank of rows that met every token was allocated


def _terms(src: torch.Tensor, seed: int) -> list[list[list[int]]]:
    """One to two random constraints a sentence (of one to three tokens), the last sentence none."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(src.shape[0] - 1):
        k = 1 + b % 2
        out.append([torch.randint(4, 50, (1 + (b + j) % 3,), generator=g).tolist() for j in range(k)])
    return out + [[]]


def test_every_search_output_holds_every_constraint():
    """An untrained model never says the random terms by itself; with them, every output of every search does."""
    model = random_model(seed=1)
    b = collate([row[m].tolist() for row, m in zip(*random_batch(6, 9, seed=2), strict=True)])  # EOS-ended
    src, mask = b.src, b.src_mask
    terms = _terms(src, 3)
    c = Constraints.build(terms)
    plain = [r[0][0] for r in beam_search(model, src, mask, 4, 1.0, 1.5, 10)]
    assert not all(all(holds(p, t) for t in ts) for p, ts in zip(plain, terms, strict=True))
    outs = {
        "greedy": search(model, src, mask, 1, 1.0, 1.5, 10, constraints=c),
        "beam": search(model, src, mask, 4, 1.0, 1.5, 10, nbest=3, constraints=c),
        "uncached": search(model, src, mask, 4, 1.0, 1.5, 10, nbest=3, use_cache=False, constraints=c),
        "sample": search(model, src, mask, 1, 1.0, 1.5, 10, sampling=Sampling(draws=3, seed=4), constraints=c),
        "ensemble": search(Ensemble([model, random_model(seed=5)]).eval(), src, mask, 3, 1.0, 1.5, 10, constraints=c),
    }
    for how, results in outs.items():
        for result, ts in zip(results, terms, strict=True):
            assert result, how
            for tokens, score in result:
                assert all(holds(tokens, t) for t in ts), (how, tokens, ts)
                assert score > float("-inf")
    for a, b in zip(outs["beam"], outs["uncached"], strict=True):  # the cache changes nothing
        assert [x for x, _ in a] == [x for x, _ in b]
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)
    # the scores are the model's own: what `mtx score` gives the output
    best = [r[0] for r in outs["beam"]]
    ids = [row[m].tolist()[:-1] for row, m in zip(src, mask, strict=True)]  # score_ids puts the EOS back
    scored = score_ids(model, ids, [t for t, _ in best], 1.0)
    assert [s.score for s in scored] == pytest.approx([s for _, s in best], abs=1e-4)


def test_no_constraints_is_the_plain_beam():
    model = random_model(seed=1)
    src, mask = random_batch(5, 8, seed=6)
    c = Constraints.build([[] for _ in range(5)])
    a = beam_search(model, src, mask, 4, 1.0, 1.5, 10, nbest=4, constraints=c)
    b = beam_search(model, src, mask, 4, 1.0, 1.5, 10, nbest=4)
    assert [[x for x, _ in r] for r in a] == [[x for x, _ in r] for r in b]


def test_room_is_made_for_long_constraints():
    """Constraints longer than the output limit: the limit grows, and they still come out whole."""
    model = random_model(seed=2)
    src, mask = random_batch(3, 2, seed=1)
    terms = [[[9, 10, 11, 12, 13, 14, 15]], [[20, 21], [22, 23, 24], [25]], [[30]]]
    out = beam_search(model, src, mask, 2, 1.0, 0.5, 1, constraints=Constraints.build(terms))
    for (best, _), ts in zip((r[0] for r in out), terms, strict=True):
        assert all(holds(best, t) for t in ts)


def _after(tokens: list[int], term: list[int]) -> list[int]:
    """The tokens right after each place `term` ends in `tokens`."""
    n = len(term)
    return [tokens[i + n] for i in range(len(tokens) - n) if tokens[i : i + n] == term]


def test_no_piece_goes_on_with_a_constraints_last_word():
    """With `joins` (pieces that continue the word before them, as "s" after "dog"), none follows a constraint;
    without it, the untrained model does follow one with such a piece (or the test would show nothing)."""
    model = random_model(seed=3)
    b = collate([row[m].tolist() for row, m in zip(*random_batch(8, 7, seed=4), strict=True)])
    terms = [[[5 + i]] for i in range(8)]
    joins = torch.zeros(50, dtype=torch.bool)
    joins[10:] = True  # most of the vocabulary
    loose = beam_search(model, b.src, b.src_mask, 3, 1.0, 1.5, 10, constraints=Constraints.build(terms))
    tight = beam_search(model, b.src, b.src_mask, 3, 1.0, 1.5, 10, constraints=Constraints.build(terms, joins=joins))
    assert any(x >= 10 for r, t in zip(loose, terms, strict=True) for x in _after(r[0][0], t[0]))
    for r, t in zip(tight, terms, strict=True):
        assert holds(r[0][0], t[0])
        assert all(x < 10 for x in _after(r[0][0], t[0])), (r[0][0], t[0])


def test_joins_are_the_pieces_that_go_on_with_a_word():
    """A piece that starts with a letter or a digit goes on with the word before it ("s" after "dog", "5" after
    "room"); one that starts a word ("▁dog"), punctuation and the special pieces do not."""
    from mtx.data.tokenizer import Tokenizer

    lines = ["room5 dogs cats 42 rooms.", "a dog, room7 and cat9!", "dogs 5 cats"] * 50
    tok = Tokenizer.train(lines, vocab_size=40, model_type="bpe")
    joins = dict(zip((tok.sp.id_to_piece(i) for i in range(len(tok))), tok.joins(), strict=True))
    assert not any(joins[p] for p in ("<pad>", "<unk>", "<s>", "</s>"))
    starts = [p for p in joins if p.startswith("▁")]
    assert starts and not any(joins[p] for p in starts)
    assert any(joins[p] for p in joins if p[0].isalpha()) and all(joins[p] for p in joins if p[0].isalpha())
    digits = [p for p in joins if p[0].isdigit()]
    assert digits and all(joins[p] for p in digits), digits
    marks = [p for p in joins if p[0] in ".,!"]
    assert marks and not any(joins[p] for p in marks), marks


def test_sentences_are_batched_by_beam_width_and_counted_as_long_as_their_constraints():
    """A batch holds sentences of one beam width (a translation never depends on its batch), and a sentence with
    more constraint tokens than source pieces takes its constraints' length of the budget (the search's state
    grows with rows x constraint tokens)."""
    from fakes import WordTokenizer

    from mtx.config import DecodeConfig
    from mtx.decode.translator import BatchTranslator

    class Batches(BatchTranslator):
        def __init__(self):
            super().__init__(WordTokenizer(), DecodeConfig(beam=2, batch_tokens=200), torch.device("cpu"), 256)
            self.seen = []

        def _search(self, ids, c, use_cache, on_done, forced=None, drop=None, terms=None):
            self.seen.append((len(ids), None if terms is None else {sum(map(len, t)) for t in terms}))
            return [[([3], 0.0)] for _ in ids]  # an id the fake tokenizer knows

    tr = Batches()
    ids = [[7, 8]] * 12
    terms = [[]] * 4 + [[[9]]] * 4 + [[[9] * 12]] * 4
    tr.decode_ids(ids, terms=terms)
    # plain and width 2 (one token): 200 // 2 = 100 of sentences x length, all 4 of 3 pieces in one batch;
    # width 13 (12 tokens): 200 // 13 = 15, each counted 12 long (not 3): one a batch
    assert sorted(tr.seen, key=str) == sorted(
        [(4, None), (4, {1}), (1, {12}), (1, {12}), (1, {12}), (1, {12})], key=str
    )
