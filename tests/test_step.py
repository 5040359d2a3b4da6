"""The update step on CPU in bf16 autocast: what the CPU preset runs where the CPU has bf16 support."""

import pytest
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


def _batch():
    src = [[5 + (i * 7 + j) % 40 for j in range(2 + i % 6)] for i in range(8)]
    tgt = [[5 + (i * 3 + j) % 40 for j in range(1 + i % 5)] for i in range(8)]
    return collate(src, tgt)


def test_rdrop_weight_0_is_the_plain_step_and_without_dropout_adds_nothing():
    batch, dev = _batch(), torch.device("cpu")
    runs = {}
    for name, rdrop, dropout in (("plain", 0.0, 0.0), ("rdrop0", 0.0, 0.0), ("rdrop_nodrop", 0.5, 0.0)):
        model = random_model(seed=0, dropout=dropout).train()
        tc = TrainConfig(amp="fp32", lr=1e-3, rdrop=rdrop)
        opt = make_optimizer(model, tc)
        loss, _ = train_step(model, opt, [batch], 1.0 / batch.n_tgt_tokens, tc, dev)
        runs[name] = (loss.item(), [p.detach().clone() for p in model.parameters()])
    assert runs["rdrop0"][0] == runs["plain"][0]
    # no dropout: both passes agree, the KL term is 0 and the update is the plain one
    assert abs(runs["rdrop_nodrop"][0] - runs["plain"][0]) < 1e-4
    for a, b in zip(runs["rdrop_nodrop"][1], runs["plain"][1], strict=True):  # Adam's first step divides each
        assert torch.allclose(a, b, atol=1e-5)  # gradient by its own size: a near-zero one may round to ±4e-6


def test_rdrop_kl_term_is_positive_with_dropout():
    from mtx.train.step import rdrop_loss

    batch = _batch()
    model = random_model(seed=1, dropout=0.3).train()
    two = model(torch.cat([batch.src] * 2), torch.cat([batch.src_mask] * 2), torch.cat([batch.tgt_in] * 2))
    ce, objective = rdrop_loss(two, batch.tgt_out, 0.0, 1.0)
    assert objective > ce > 0
    same, obj_same = rdrop_loss(torch.cat([two[:8]] * 2), batch.tgt_out, 0.0, 1.0)
    assert torch.allclose(same, obj_same)


def test_rdrop_objective_is_ce_plus_weight_times_kl_over_real_tokens_only():
    """The KL term, computed here from its definition, is added `weight` times (a linear weight), and logits at
    padding positions change nothing."""
    from mtx.data.tokenizer import PAD
    from mtx.train.step import rdrop_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, 11, generator=g)  # two passes of a batch of 2
    target = torch.tensor([[5, 6, 7, PAD, PAD], [8, 9, 5, 6, 7]])
    pa, pb = logits[:2].log_softmax(-1), logits[2:].log_softmax(-1)
    kl = 0.5 * (torch.nn.functional.kl_div(pb, pa, log_target=True, reduction="none").sum(-1)
                + torch.nn.functional.kl_div(pa, pb, log_target=True, reduction="none").sum(-1))  # fmt: skip
    want = kl[target != PAD].sum()
    for weight in (0.5, 2.0):
        ce, objective = rdrop_loss(logits, target, 0.0, weight)
        assert float(objective - ce) == pytest.approx(weight * float(want), rel=1e-5)
    moved = logits.clone()
    moved[:, 3:, :][torch.cat([target, target])[:, 3:] == PAD] += 5 * torch.randn(11, generator=g)
    assert rdrop_loss(moved, target, 0.0, 1.0)[1] == pytest.approx(float(rdrop_loss(logits, target, 0.0, 1.0)[1]))


@pytest.mark.parametrize("decay_1d", [False, True])
def test_optimizer_decays_matrices_and_1d_tensors_only_when_told(decay_1d):
    model = random_model(seed=0)
    tc = TrainConfig(lr=1e-3, weight_decay=0.3, decay_1d=decay_1d, betas=(0.8, 0.95))
    opt = make_optimizer(model, tc)
    matrices, vectors = opt.param_groups
    assert {id(p) for p in matrices["params"]} == {id(p) for p in model.parameters() if p.dim() >= 2}
    assert {id(p) for p in vectors["params"]} == {id(p) for p in model.parameters() if p.dim() < 2}
    assert len(vectors["params"]) > 0 and matrices["weight_decay"] == 0.3
    assert vectors["weight_decay"] == (0.3 if decay_1d else 0.0)
    assert all(
        g["lr"] == 1e-3 and g["betas"] == (0.8, 0.95) and g["eps"] == 1e-9 and g["fused"] for g in (matrices, vectors)
    )


def test_micro_batches_accumulate_to_the_step_of_their_union():
    """train_step over two micro-batches with 1 / (their target tokens) is the step on both as one batch: the
    same summed loss, the same gradients (fp32, no dropout, no clipping)."""
    src = [[5 + (i * 7 + j) % 40 for j in range(2 + i % 6)] for i in range(8)]
    tgt = [[5 + (i * 3 + j) % 40 for j in range(1 + i % 5)] for i in range(8)]
    parts, whole = [collate(src[:3], tgt[:3]), collate(src[3:], tgt[3:])], collate(src, tgt)
    tc, dev = TrainConfig(amp="fp32", lr=1e-2, clip_norm=0.0, label_smoothing=0.1), torch.device("cpu")
    after = []
    for batches in (parts, [whole]):
        model = random_model(seed=0)  # in eval mode: no dropout
        opt = make_optimizer(model, tc)
        loss, bad = train_step(model, opt, batches, 1.0 / whole.n_tgt_tokens, tc, dev)
        after.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (la, ga), (lb, gb) = after
    assert la == pytest.approx(lb, rel=1e-5) and not bad
    # the gradients the update used (Adam's first step is lr * sign(g) where g is tiny: not comparable)
    assert max((a - b).abs().max().item() for a, b in zip(ga, gb, strict=True)) < 1e-6
    assert max(g.abs().max().item() for g in ga) > 1e-3
