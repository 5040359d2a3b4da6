"""Checkpoints: save/load identity, and clear errors for damaged or mismatched files."""

import pickle

import pytest
import torch
from conftest import random_batch

from mtx import checkpoint
from mtx.config import Config, ModelConfig
from mtx.data.tokenizer import Tokenizer
from mtx.errors import MtxError, UsageError


@pytest.fixture(scope="module")
def tokenizer(tiny_corpus):
    return Tokenizer.train((tiny_corpus / "train.de").read_text(encoding="utf-8").splitlines(), 60)


def _saved(tmp_path, tokenizer, **kw):
    cfg = Config()
    cfg.model = ModelConfig(vocab_size=len(tokenizer), d_model=32, n_heads=4, enc_layers=1, dec_layers=1, d_ff=64)
    for k, v in kw.items():
        setattr(cfg.model, k, v)
    torch.manual_seed(0)
    from mtx.models.transformer import Transformer

    model = Transformer(cfg.model).eval()
    checkpoint.save(tmp_path / "m", model, tokenizer, cfg, {"step": 7})
    return model, tmp_path / "m"


@pytest.mark.parametrize("tie", [True, False])
def test_save_load_identical_logits(tmp_path, tokenizer, tie):
    model, path = _saved(tmp_path, tokenizer, tie_embeddings=tie)
    loaded, tok, cfg, meta = checkpoint.load(path)
    src, mask = random_batch(3, 5, vocab=len(tokenizer))
    tgt = torch.randint(4, len(tokenizer), (3, 4))
    assert torch.equal(model(src, mask, tgt), loaded(src, mask, tgt))
    assert tok.proto == tokenizer.proto and meta["step"] == 7 and cfg.model.tie_embeddings is tie
    assert not any(p.name.startswith(".") for p in path.iterdir())  # no temporary files left


def test_missing_model_directory(tmp_path):
    with pytest.raises(UsageError, match="model directory not found"):
        checkpoint.load(tmp_path / "nothing")


def test_truncated_weights_error(tmp_path, tokenizer):
    _, path = _saved(tmp_path, tokenizer)
    w = path / checkpoint.WEIGHTS
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(MtxError, match="model.safetensors: unreadable or truncated"):
        checkpoint.load(path)


def test_pickle_in_place_of_weights_is_not_executed(tmp_path, tokenizer):
    _, path = _saved(tmp_path, tokenizer)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (path / checkpoint.WEIGHTS).write_bytes(pickle.dumps(Evil()))
    with pytest.raises(MtxError):
        checkpoint.load(path)
    assert not marker.exists()


def test_vocabulary_mismatch_error(tmp_path, tokenizer, tiny_corpus):
    _, path = _saved(tmp_path, tokenizer)
    other = Tokenizer.train((tiny_corpus / "train.en").read_text(encoding="utf-8").splitlines(), 50)
    assert len(other) != len(tokenizer)
    (path / checkpoint.TOKENIZER).write_bytes(other.proto)
    with pytest.raises(MtxError, match="tokenizer.model: vocabulary of"):
        checkpoint.load(path)


def test_incompatible_format_and_shape(tmp_path, tokenizer):
    _, path = _saved(tmp_path, tokenizer)
    cfg_file = path / checkpoint.CONFIG
    text = cfg_file.read_text()
    cfg_file.write_text(text.replace('"d_ff": 64', '"d_ff": 96'))
    with pytest.raises(MtxError, match="weights do not match the config"):
        checkpoint.load(path)
    cfg_file.write_text(text.replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(MtxError, match="checkpoint format 99"):
        checkpoint.load(path)
