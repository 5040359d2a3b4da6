"""The vocabulary shortlist (mtx/data/shortlist.py): what it learns, its file, and search restricted to it."""

import shutil

import numpy as np
import pytest
import torch
from conftest import ARCH_IDS, ARCHS, random_batch, random_model
from typer.testing import CliRunner

from mtx.cli.main import app
from mtx.data.encode import IdColumn
from mtx.data.shortlist import ALWAYS, SHORTLIST, Shortlist, learn
from mtx.data.tokenizer import EOS, UNK, Tokenizer
from mtx.decode.load import load
from mtx.decode.search import beam_search, greedy_search
from mtx.errors import MtxError
from mtx.models.shortlisted import Shortlisted

runner = CliRunner()


def column(rows):
    return IdColumn.from_lists(rows)


def test_each_source_piece_lists_its_most_frequent_companions():
    # piece 10 comes with 20 three times, with 30 three times, with 21 and 22 once; 30 is in every target
    src = [[10, 11], [10], [10, 12], [11, 12], [12]]
    tgt = [[20, 21, 30], [20, 30], [20, 22, 30], [21, 22, 30], [22, 30]]
    s = learn(column(src), column(tgt), np.arange(5), 40, k=2, n=1)
    assert list(s.table[10]) == [20, 30]  # a tie on count: the lower id first
    assert list(s.table[11]) == [21, 30]  # twice each; 20 and 22 once
    assert s.table[13].tolist() == [-1, -1]  # never seen
    assert set(s.frequent) == {30, *ALWAYS}  # the most frequent target piece, and the special ones
    dice = learn(column(src), column(tgt), np.arange(5), 40, k=3, n=1, by="dice")
    assert list(dice.table[12]) == [22, 30, 21]  # 2·3/(3+3), 2·3/(3+5), 2·1/(3+2) ahead of 20: 2·1/(3+3)


def test_count_and_dice_rank_apart_where_they_should():
    """Piece 12 (10 pairs) comes with 50 once (50's only pair), with 51 in 5 of 51's 10 pairs, with 53 in 4 of its
    40: Dice 2c/(df_s + df_t) ranks 51 first (0.5 against 0.18 and 0.16), where c/(df_s·df_t) or 2c - (df_s + df_t)
    would rank 50. Piece 13 (10 pairs) comes with 60 in both of 60's pairs, with 61 in 3 of its 30 and with five
    pieces seen once: by count 61 (3), by Dice 60 (0.33 against 0.18 and 0.15)."""
    pairs = [(12, 50)] + [(12, 51)] * 5 + [(14, 51)] * 5 + [(12, 53)] * 4 + [(15, 53)] * 36
    pairs += [(13, 60)] * 2 + [(13, 61)] * 3 + [(16, 61)] * 27 + [(13, t) for t in range(62, 67)]
    # 17 (10 pairs): with 70 once (its only pair), with 71 in 4 of its 60: Dice 70 (0.18 against 0.11); 2^c would
    # rank 71 (16/70 against 2/11)
    pairs += [(17, 70)] + [(17, 71)] * 4 + [(18, 71)] * 56 + [(17, t) for t in range(72, 77)]
    src, tgt = column([[a] for a, _ in pairs]), column([[b] for _, b in pairs])
    rows = np.arange(len(pairs))
    dice = learn(src, tgt, rows, 80, k=1, n=0, by="dice")
    assert dice.table[12].tolist() == [51] and dice.table[13].tolist() == [60] and dice.table[17].tolist() == [70]
    assert learn(src, tgt, rows, 80, k=1, n=0).table[13].tolist() == [61]


def test_the_frequent_pieces_are_the_n_most_frequent_seen_ones():
    src, tgt = [[10], [11], [12]], [[20, 21], [20], [22]]  # 20 twice, 21 and 22 once, the rest never
    s = learn(column(src), column(tgt), np.arange(3), 40, k=1, n=10)
    assert set(s.frequent.tolist()) == {20, 21, 22, *ALWAYS}
    assert set(learn(column(src), column(tgt), np.arange(3), 40, k=1, n=1).frequent.tolist()) == {20, *ALWAYS}


def test_only_the_rows_given_are_learnt_from():
    src, tgt = [[10], [11]], [[20], [21]]
    s = learn(column(src), column(tgt), np.array([1]), 40, k=3, n=0)
    assert s.table[10].tolist() == [-1, -1, -1] and s.table[11][0] == 21


def test_chunks_do_not_change_what_is_learnt():
    rng = np.random.default_rng(0)
    src = [list(rng.integers(4, 60, rng.integers(1, 8))) for _ in range(300)]
    tgt = [list(rng.integers(4, 60, rng.integers(1, 8))) for _ in range(300)]
    whole = learn(column(src), column(tgt), np.arange(300), 60, k=5, n=7)
    parts = learn(column(src), column(tgt), np.arange(300), 60, k=5, n=7, chunk=17)
    assert np.array_equal(whole.table, parts.table) and np.array_equal(whole.frequent, parts.frequent)


def test_a_batch_vocabulary_is_the_union_of_its_sources_lists_the_frequent_and_the_extras():
    table = np.full((50, 2), -1)
    table[10], table[11] = [20, 21], [22, -1]
    s = Shortlist(table, np.array([30]))
    v = s.vocab([[10, 11], [10]], extra=[40])
    assert v.tolist() == sorted({*ALWAYS, 20, 21, 22, 30, 40})
    assert EOS in s.vocab([]) and s.vocab([[99]]).tolist() == sorted({*ALWAYS, 30})  # an unknown id adds nothing
    table[49] = [44, 45]
    assert s.vocab([[-1]]).tolist() == sorted({*ALWAYS, 30})  # nor a negative one (not the last row)


@pytest.fixture(scope="module")
def tok():
    from conftest import make_pairs

    lines = [x for pair in make_pairs(200, 3) for x in pair]
    return Tokenizer.train(lines, 60)


def test_the_file_is_the_vocabulary_map_format_and_reads_back(tok, tmp_path):
    piece = tok.sp.id_to_piece
    table = np.full((len(tok), 3), -1)
    table[10], table[11] = [20, 21, 22], [23, -1, -1]
    s = Shortlist(table, np.array([30]))
    s.write(tmp_path / "s.txt", tok)
    text = (tmp_path / "s.txt").read_text(encoding="utf-8")
    always = " ".join(piece(i) for i in sorted({UNK, EOS, 30}))  # PAD and BOS are never output
    assert text == f"\t{always}\n{piece(10)}\t{piece(20)} {piece(21)} {piece(22)}\n{piece(11)}\t{piece(23)}\n"
    back = Shortlist.read(tmp_path / "s.txt", tok)
    assert back.table[10].tolist() == [20, 21, 22] and back.table[11].tolist() == [23, -1, -1]
    assert back.frequent.tolist() == s.frequent.tolist() and back.table.shape == (len(tok), 3)


@pytest.mark.parametrize(("text", "line", "says"), [
    ("\tP\nno tab here\n", 2, "expected 'source piece<TAB>target pieces'"),
    ("two keys\tP\n", 1, "expected 'source piece<TAB>target pieces'"),
    ("\tP\nP\tnot-a-piece\n", 2, "'not-a-piece' is not a piece"),
])  # fmt: skip
def test_a_bad_file_is_one_error_naming_its_line(tok, tmp_path, text, line, says):
    (tmp_path / "s.txt").write_text(text.replace("P", tok.sp.id_to_piece(10)), encoding="utf-8")
    with pytest.raises(MtxError) as e:
        Shortlist.read(tmp_path / "s.txt", tok)
    assert f"s.txt:{line}: " in str(e.value) and says in str(e.value)
    with pytest.raises(MtxError, match="unreadable"):
        Shortlist.read(tmp_path, tok)  # a directory


def test_a_key_the_tokenizer_lacks_is_skipped(tok, tmp_path):
    p = tok.sp.id_to_piece(10)
    (tmp_path / "s.txt").write_text(f"\t{p}\nnot-a-piece\t{p}\n", encoding="utf-8")
    s = Shortlist.read(tmp_path / "s.txt", tok)
    assert s.table.shape == (len(tok), 0) and 10 in s.frequent.tolist()


def test_learn_shortlist_takes_the_prepared_data_and_logs_its_time(tok, logs, monkeypatch):
    from types import SimpleNamespace

    from mtx.config import DataConfig
    from mtx.data import shortlist

    train = SimpleNamespace(src=column([[10], [11]]), tgt=column([[20], [21]]), rows=np.arange(2))
    clock = iter([100.0, 250.5])  # elapsed 150.5 (a remainder or a ratio of the two would differ)
    monkeypatch.setattr(shortlist.time, "perf_counter", lambda: next(clock))
    s = shortlist.learn_shortlist(SimpleNamespace(train=train, tokenizer=tok), DataConfig(shortlist_k=2, shortlist_n=1))
    assert s.table[10].tolist() == [20, -1] and s.table.shape == (len(tok), 2)
    assert any("2 target pieces per source piece and the 1 most frequent (150.5s)" in x for x in logs)


def test_the_file_round_trips_and_is_ctranslate2s_vocabulary_map(tiny_model):
    tok = Tokenizer.load(tiny_model / "tokenizer.model")
    s = Shortlist.read(tiny_model / SHORTLIST, tok)
    text = (tiny_model / SHORTLIST).read_text(encoding="utf-8")
    first, *rest = text.splitlines()
    assert first.startswith("\t") and all("\t" in line and " " not in line.split("\t")[0] for line in rest)
    again = tiny_model.parent / "again.txt"
    s.write(again, tok)
    back = Shortlist.read(again, tok)
    assert np.array_equal(back.table, s.table) and np.array_equal(back.frequent, s.frequent)
    again.unlink()


def test_a_bad_shortlist_file_is_one_line_naming_its_line(model_copy):
    (model_copy / SHORTLIST).write_text("\t▁a\nnotab\n", encoding="utf-8")
    r = runner.invoke(app, ["translate", "--model", str(model_copy), "--shortlist", "Ein hund."])
    assert r.exit_code != 0 and f"{SHORTLIST}:2:" in r.output and "Traceback" not in r.output


def test_training_writes_a_shortlist_that_covers_the_references(tiny_model, tiny_corpus):
    """The toy corpus is word for word: every reference piece is in the shortlist of its source."""
    tok = Tokenizer.load(tiny_model / "tokenizer.model")
    s = Shortlist.read(tiny_model / SHORTLIST, tok)
    src = (tiny_corpus / "val.de").read_text(encoding="utf-8").splitlines()
    ref = (tiny_corpus / "val.en").read_text(encoding="utf-8").splitlines()
    for x, y in zip(tok.encode(src), tok.encode(ref), strict=True):
        assert set(y) <= set(s.vocab([x]).tolist())


def globalised(results, vocab):
    return [[([int(vocab[i]) for i in toks], s) for toks, s in res] for res in results]


@pytest.mark.parametrize("kw", ARCHS, ids=ARCH_IDS)
@pytest.mark.parametrize("use_cache", [True, False])
def test_the_whole_vocabulary_as_shortlist_is_no_shortlist(kw, use_cache):
    model = random_model(**kw)
    src, mask = random_batch(3, 7)
    every = Shortlisted(model, torch.arange(model.config.vocab_size))
    for search in (greedy_search, beam_search):
        assert search(every, src, mask, use_cache=use_cache) == search(model, src, mask, use_cache=use_cache)


@pytest.mark.parametrize("kw", ARCHS, ids=ARCH_IDS)
def test_search_outputs_only_the_shortlist_with_its_renormalised_scores(kw):
    model = random_model(**kw)
    src, mask = random_batch(3, 7)
    vocab = torch.tensor([0, 1, 2, 3, 7, 11, 19, 23, 42])
    view = Shortlisted(model, vocab)
    cached = globalised(beam_search(view, src, mask, nbest=3), vocab)
    full = globalised(beam_search(view, src, mask, nbest=3, use_cache=False), vocab)
    for a, b in zip(cached, full, strict=True):
        assert [t for t, _ in a] == [t for t, _ in b]
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)
        assert all(set(t) <= set(vocab.tolist()) for t, _ in a)
    # the view's log-probabilities: the model's logits at vocab's ids, log-softmaxed over those alone
    tgt = torch.tensor([[2, 7, 19], [2, 42, 3], [2, 11, 11]])
    local = view.local(tgt)
    logits = model(src, mask, tgt)[..., vocab]
    assert torch.allclose(view(src, mask, local), logits, atol=1e-6)
    step = view.init_cache(model.encode(src, mask), mask, 1, 4)
    assert torch.allclose(view.decode_step(local[:, 0], step, 0), logits[:, 0], atol=1e-5)


def test_a_view_refuses_a_vocab_without_the_special_ids_or_unsorted():
    model = random_model()
    for bad in ([1, 2, 3, 9], [0, 1, 2, 3, 9, 5], [0, 1, 2, 3, 5, 5]):
        with pytest.raises(ValueError):
            Shortlisted(model, torch.tensor(bad))


def test_translate_with_the_shortlist_equals_without_on_the_tiny_model(tiny_model, tiny_corpus):
    lines = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    plain, _ = load(tiny_model, device="cpu")
    short, _ = load(tiny_model, device="cpu", shortlist=True)
    assert [t.text for t in short.translate(lines)] == [t.text for t in plain.translate(lines)]


def test_prefix_and_terms_pieces_join_the_batch_vocabulary(tiny_model):
    tr, _ = load(tiny_model, device="cpu", shortlist=True)
    tr.shortlist = Shortlist(np.full((len(tr.tokenizer), 1), -1), np.zeros(0, np.int64))  # nothing but the special
    out = tr.translate(["Ein hund."], target_prefix="A red", constraints=[["blue"]])[0].text
    assert out.startswith("A red") and "blue" in out


def test_mtx_shortlist_writes_one_for_an_older_model(model_copy, tiny_corpus):
    (model_copy / SHORTLIST).unlink()
    r = runner.invoke(app, ["translate", "--model", str(model_copy), "--shortlist", "Ein hund."])
    assert r.exit_code != 0 and "mtx shortlist" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["shortlist", "--model", str(model_copy), "--data", str(tiny_corpus), "--k", "3"])
    assert r.exit_code == 0, r.output
    s = Shortlist.read(model_copy / SHORTLIST, Tokenizer.load(model_copy / "tokenizer.model"))
    assert s.table.shape[1] == 3
    r = runner.invoke(app, ["translate", "--model", str(model_copy), "--shortlist", "Ein hund."])
    assert r.exit_code == 0 and r.output.strip() == "A dog."


def test_an_ensemble_of_different_shortlists_is_refused(tiny_model, model_copy):
    (model_copy / SHORTLIST).write_text("\t▁a\n", encoding="utf-8")
    args = ["translate", "--model", str(tiny_model), "--model", str(model_copy), "Ein hund."]
    r = runner.invoke(app, [*args, "--shortlist"])
    assert r.exit_code != 0 and "different shortlists" in r.output
    assert runner.invoke(app, args).exit_code == 0  # without --shortlist the files are not read
    shutil.copyfile(tiny_model / SHORTLIST, model_copy / SHORTLIST)
    assert runner.invoke(app, [*args, "--shortlist"]).exit_code == 0


def test_both_engines_keep_to_a_restricting_shortlist(model_copy):
    tok = Tokenizer.load(model_copy / "tokenizer.model")
    allowed = tok.encode(["A cat."])[0]
    pieces = " ".join(tok.sp.id_to_piece(i) for i in allowed)
    (model_copy / SHORTLIST).write_text(f"\t{pieces}\n", encoding="utf-8")
    outs = {}
    for engine in ("mtx", "ct2"):
        args = ["translate", "--model", str(model_copy), "--engine", engine, "--beam", "1", "Ein hund."]
        free, short = runner.invoke(app, args), runner.invoke(app, [*args, "--shortlist"])
        assert free.exit_code == 0 and short.exit_code == 0, short.output
        assert free.stdout.strip() == "A dog."
        outs[engine] = short.stdout.strip()
        assert set(tok.encode([outs[engine]])[0]) <= set(allowed)
    assert outs["mtx"] == outs["ct2"]
