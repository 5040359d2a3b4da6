"""Corpora read safely: the tokenizer's sample of small corpora, a held-out validation set where none is given, and
long lines scanned and checked in bounded memory."""

import json
import tracemalloc

import numpy as np
import pytest
from conftest import TINY_SETTINGS, write_corpus
from test_cli import _one_line_error as one_line
from test_cli import run
from test_model_directories import _train_args

import mtx.data.text as text_mod
from mtx.config import build_config
from mtx.data.prepare import _sample
from mtx.data.prepare import prepare_data as prepare
from mtx.errors import MtxError


def test_the_tokenizer_sample_never_fails_and_reaches_the_last_rows():
    for n, k in [(510, 500), (250_100, 250_000), (300, 10), (1000, 999)]:  # k just under n failed
        one = _sample(np.random.default_rng(0), n, k)
        assert 0 < len(one) <= k and one.max() < n and (np.diff(one) > 0).all()
    rows = np.concatenate([_sample(np.random.default_rng(seed), 1000, 300) for seed in range(20)])
    assert rows.max() >= 768  # the 232 rows after the last whole block of 256 are drawn too


def test_few_pairs_and_no_validation_split(tmp_path):
    tsv = tmp_path / "c.tsv"
    tsv.write_text("de\ten\n" + "".join(f"Hund {i}.\tDog {i}.\n" for i in range(5)), encoding="utf-8")
    args = ["--set", "data.spm_sample_sentences=1000", "--set", "model.vocab_size=30"]
    r = run(*_train_args(tsv, tmp_path / "m"), *args)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "m" / "data.json").read_text())["pairs"]["de-en"]["valid_held_out"] == 1
    tsv.write_text("de\ten\nHund.\tDog.\n", encoding="utf-8")
    one_line(run(*_train_args(tsv, tmp_path / "m2"), *args), 1, "c.tsv", "at least 2 pairs")
    corpus = write_corpus(tmp_path / "d", {"train": 30})
    (corpus / "val.de").write_text("\n \n", encoding="utf-8")
    (corpus / "val.en").write_text("A.\n\n", encoding="utf-8")
    one_line(run(*_train_args(corpus, tmp_path / "m3")), 1, "val.de", "no pair without an empty side")


def test_scanning_a_long_line_holds_one_block(tmp_path, monkeypatch):
    monkeypatch.setattr(text_mod, "CHUNK", 64 << 10)
    path = tmp_path / "long.de"
    path.write_bytes(b"Hund " * 1_000_000 + b"\nKatze.\n")  # a 5 MB line
    tracemalloc.start()
    assert text_mod.scan_text(path) == 2
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20  # a few blocks, not the line


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 4 << 20])
def test_scan_names_the_same_line_and_byte_whatever_the_block(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(text_mod, "CHUNK", chunk)
    cases = {
        "ab\nÄÖü\ncd".encode(): 3,
        b"ab\nxy\xe4z\n": "f:2: invalid UTF-8 at byte 2",
        b"ab\nxyz\r\nq\n": 3,
        b"ab\nxyz\rq\n": "f:2: carriage return inside a line",
        "ab\nxä".encode()[:-1]: "f:2: invalid UTF-8 at byte 1",
        b"ab\nxyz\r": 2,
        b"": 0,
    }
    for data, want in cases.items():
        (tmp_path / "f").write_bytes(data)
        try:
            got = text_mod.scan_text(tmp_path / "f")
        except MtxError as e:
            got = str(e).replace(str(tmp_path / "f"), "f")
        assert got == want, (data, got)


def test_an_over_long_line_is_not_encoded_in_full(tmp_path, monkeypatch, logs):
    """A 200,000-character training line: cut where its length alone makes it too long, encoded only that far,
    and dropped as too long; the other lines are encoded whole."""
    import sentencepiece as spm

    corpus = write_corpus(tmp_path / "c", {"train": 40, "val": 5})
    lines = (corpus / "train.de").read_text(encoding="utf-8").splitlines()
    lines[3] = "Hund " * 40_000
    (corpus / "train.de").write_text("\n".join(lines) + "\n", encoding="utf-8")
    longest = []
    real = spm.SentencePieceProcessor.encode

    def spy(self, input, *args, **kwargs):
        if isinstance(input, list):
            longest.append(max(map(len, input)))
        return real(self, input, *args, **kwargs)

    monkeypatch.setattr(spm.SentencePieceProcessor, "encode", spy)
    data = prepare(build_config(None, [*TINY_SETTINGS, "data.max_tokens=64"]), corpus)
    assert max(longest) <= 4 * 32 * 64 < 200_000
    report = data.report["de-en"]
    assert report["too_long"] == 1 and report["kept"] == 39 and any("longer than 64 pieces" in x for x in logs)
