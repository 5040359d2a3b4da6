"""Translator: chunked streaming keeps order; running out of memory retries with smaller batches."""

import dataclasses

import pytest
import torch

import mtx.decode.translator as translator_mod
from mtx import checkpoint
from mtx.config import DecodeConfig
from mtx.decode.translator import Translator
from mtx.errors import MtxError


@pytest.fixture(scope="module")
def translator(tiny_model):
    model, tok, cfg, _ = checkpoint.load(tiny_model)
    cfg.decode = dataclasses.replace(cfg.decode, beam=3)
    return Translator(model, tok, cfg.decode, torch.device("cpu"))


@pytest.fixture(scope="module")
def sources(tiny_corpus):
    return (tiny_corpus / "train.de").read_text(encoding="utf-8").splitlines()[:25]


def test_stream_in_chunks_equals_one_batch(translator, sources):
    lines = sources[:10] + [""] + sources[10:]
    whole = [t.text for t in translator.translate(lines)]
    chunked = [t.text for t in translator.stream(iter(lines), chunk=4)]
    assert chunked == whole and whole[10] == ""


def test_out_of_memory_retries_with_halves(translator, sources, monkeypatch):
    expected = [t.text for t in translator.translate(sources)]
    real = translator_mod.search
    sizes = []

    def small_only(model, src, *args):
        sizes.append(src.shape[0])
        if src.shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, src, *args)

    monkeypatch.setattr(translator_mod, "search", small_only)
    assert [t.text for t in translator.translate(sources)] == expected
    decoded = [s for s in sizes if s <= 3]  # the searches that did not run out of memory
    assert sizes[0] > 3 and sum(decoded) == len(sources) and translator.oom_retries > 0  # each sentence once


def test_out_of_memory_on_one_sentence_is_an_error(translator, sources, monkeypatch):
    def never(*args):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(translator_mod, "search", never)
    with pytest.raises(MtxError, match="out of memory translating one sentence"):
        translator.translate(sources[:2])


def test_decoding_settings_per_call(translator, sources):
    """`decode=` for one call: beam 1 gives the greedy search's outputs; the translator's own settings stay."""
    import dataclasses

    from mtx.decode.search import greedy_search

    greedy = translator.translate(sources, decode=dataclasses.replace(translator.cfg, beam=1))
    ids = [translator.tokenizer.encode([s])[0] for s in sources]
    want = []
    for x in ids:
        src = torch.tensor([x + [3]])
        (res,) = greedy_search(translator.model, src, src != 0, translator.cfg.max_len_a, translator.cfg.max_len_b)
        want.append(translator.tokenizer.decode([res[0][0]])[0])
    assert [t.text for t in greedy] == want and translator.cfg.beam == 3


def test_an_over_long_input_is_truncated_with_a_warning(tiny_model, logs, monkeypatch):
    model, tok, cfg, _ = checkpoint.load(tiny_model)
    translator = Translator(model, tok, DecodeConfig(beam=1), torch.device("cpu"))
    lengths = []
    real = translator_mod.search

    def spy(model, src, *args):
        lengths.append(src.shape[1])
        return real(model, src, *args)

    monkeypatch.setattr(translator_mod, "search", spy)
    line = "Ein Hund rennt hier " * 100
    n = len(tok.encode([line])[0])
    assert n > 255
    (out,) = translator.translate([line])
    assert lengths == [256] and out.text  # 255 pieces and EOS
    assert any(f"input line 1 has {n} pieces; truncated to 255" in x for x in logs)
