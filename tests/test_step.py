"""The update step on CPU in bf16 autocast: what the CPU preset runs where the CPU has bf16 support."""

import torch
from conftest import TINY_SETTINGS, random_model

import mtx.train.step as step_mod
from mtx import checkpoint
from mtx.config import TrainConfig, build_config
from mtx.data.batching import collate
from mtx.train.loop import train
from mtx.train.step import make_optimizer, train_step


def test_bf16_cpu_step_computes_in_bf16_and_learns(monkeypatch):
    dtypes = []
    real = step_mod.loss_fn

    def spy(logits, target, smoothing):
        dtypes.append(logits.dtype)
        return real(logits, target, smoothing)

    monkeypatch.setattr(step_mod, "loss_fn", spy)
    model = random_model(seed=0).train()
    tc = TrainConfig(amp="bf16", lr=3e-3)
    opt = make_optimizer(model, tc)
    # sentences of different lengths: padding in source and target
    src = [[5 + (i * 7 + j) % 40 for j in range(2 + i % 6)] for i in range(12)]
    tgt = [[5 + (i * 3 + j) % 40 for j in range(1 + i % 5)] for i in range(12)]
    batch = collate(src, tgt)
    assert not batch.src_mask.all() and (batch.tgt_out == 0).any()
    losses = []
    for g in opt.param_groups:
        g["lr"] = tc.lr
    for _ in range(40):
        loss, bad = train_step(model, opt, [batch], 1.0 / batch.n_tgt_tokens, tc, torch.device("cpu"))
        assert not bad
        losses.append(loss.item() / batch.n_tgt_tokens)
    assert set(dtypes) == {torch.bfloat16}  # the logits come out of autocast in bf16
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert losses[-1] < 0.5 * losses[0]


def test_training_with_the_cpu_bf16_setting_end_to_end(tiny_corpus, tmp_path):
    cfg = build_config(None, [*TINY_SETTINGS, "train.amp=bf16", "train.max_steps=30", "train.eval_every=15"])
    result = train(cfg, tiny_corpus, tmp_path / "m")
    losses = [h["valid_loss"] for h in result["history"]]
    assert result["steps"] == 30 and losses[-1] < losses[0]
    model, *_ = checkpoint.load(tmp_path / "m")
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
