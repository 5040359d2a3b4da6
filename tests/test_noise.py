"""Token dropout: which ids it may replace, how often, and that training feeds the model the noised ids."""

import pytest
import torch
from conftest import random_model

from mtx.config import TrainConfig
from mtx.data.batching import collate, drop_tokens
from mtx.data.tokenizer import BOS, EOS, PAD, UNK
from mtx.errors import UsageError
from mtx.train.step import make_optimizer, train_step


def test_drop_tokens_keeps_specials_and_hits_the_rate():
    torch.manual_seed(0)
    b = collate([[5 + (i * 7 + j) % 40 for j in range(3 + i % 30)] for i in range(400)], [[4, 5, 6]] * 400)
    out = drop_tokens(b.src, 0.25)
    ordinary = b.src > EOS
    assert torch.equal(out[~ordinary], b.src[~ordinary])  # PAD and EOS untouched
    changed = out != b.src
    assert torch.all(out[changed] == UNK)
    rate = changed.sum().item() / ordinary.sum().item()
    assert 0.23 < rate < 0.27
    tgt = drop_tokens(b.tgt_in, 0.5)
    assert torch.all(tgt[:, 0] == BOS) and torch.equal(tgt == PAD, b.tgt_in == PAD)


def test_drop_tokens_off_is_identity_and_draws_nothing():
    ids = torch.tensor([[5, 6, EOS, PAD]])
    state = torch.get_rng_state()
    assert drop_tokens(ids, 0.0) is ids
    assert torch.equal(torch.get_rng_state(), state)


def test_train_step_feeds_noised_ids_to_the_model():
    torch.manual_seed(0)
    model = random_model()
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append((args[0].clone(), args[2].clone())))
    b = collate([[5 + j for j in range(20)]] * 8, [[6 + j for j in range(20)]] * 8)
    tc = TrainConfig(src_token_dropout=0.3, tgt_token_dropout=0.2)
    train_step(model, make_optimizer(model, tc), [b], 1.0 / b.n_tgt_tokens, tc, torch.device("cpu"))
    src, tgt_in = seen[0]
    assert (src == UNK).any() and (tgt_in == UNK).any()
    assert torch.equal(src == EOS, b.src == EOS) and torch.equal(tgt_in[:, 0], b.tgt_in[:, 0])
    tc = TrainConfig()
    train_step(model, make_optimizer(model, tc), [b], 1.0 / b.n_tgt_tokens, tc, torch.device("cpu"))
    assert torch.equal(seen[1][0], b.src) and torch.equal(seen[1][1], b.tgt_in)


@pytest.mark.parametrize("key", ["src_token_dropout", "tgt_token_dropout"])
def test_token_dropout_out_of_range_is_a_usage_error(tmp_path, key):
    from mtx.config import Config
    from mtx.train.loop import train

    cfg = Config()
    setattr(cfg.train, key, 1.0)
    with pytest.raises(UsageError, match="token_dropout"):
        train(cfg, tmp_path / "nodata", tmp_path / "out")
