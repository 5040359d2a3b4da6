"""`train.compile`: the torch.compile'd training step computes what the eager one does, for batches of any shape,
from one graph. The test traces with the `aot_eager` backend (the same graphs, forward and backward, without
inductor's C++ code generation, which takes minutes on 2 cores); `mtx bench train --compile` runs inductor."""

import copy

import torch
from conftest import random_batch, random_model
from torch._dynamo.utils import counters

from mtx.config import TrainConfig
from mtx.data.batching import Batch
from mtx.train.step import compiled, make_optimizer, train_step


def _batches():
    out = []
    for i, (B, S, T) in enumerate([(4, 7, 6), (3, 11, 9), (6, 5, 12)]):
        src, src_mask = random_batch(B, S, seed=i)
        tgt, _ = random_batch(B, T + 1, seed=100 + i)
        out.append(Batch(src, src_mask, tgt[:, :-1].contiguous(), tgt[:, 1:].contiguous()))
    return out


def test_compiled_steps_match_eager_steps():
    torch._dynamo.reset()
    tc = TrainConfig(amp="fp32", label_smoothing=0.1)
    eager = random_model(seed=3, dropout=0.0).train()  # no dropout: the same function
    fast = copy.deepcopy(eager)
    opt_e, opt_f = make_optimizer(eager, tc), make_optimizer(fast, tc)
    stepper = compiled(fast, backend="aot_eager")
    counters.clear()
    for b in _batches() * 2:  # losses after the first depend on the updates too
        scale = 1.0 / b.n_tgt_tokens
        loss_e, _ = train_step(eager, opt_e, [b], scale, tc, torch.device("cpu"))
        loss_f, _ = train_step(stepper, opt_f, [b], scale, tc, torch.device("cpu"))
        torch.testing.assert_close(loss_f, loss_e, rtol=1e-4, atol=1e-4)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])  # not one per batch shape


def test_a_compiled_training_saves_a_plain_checkpoint(tiny_corpus, tmp_path, monkeypatch):
    """`train.compile`: the checkpoint and the state hold the plain module's names (no `_orig_mod.`) and load."""
    from conftest import TINY_SETTINGS
    from safetensors.torch import load_file

    import mtx.train.loop as train_mod
    from mtx import checkpoint
    from mtx.config import build_config
    from mtx.train.state import find_state

    torch._dynamo.reset()
    calls = []

    def dynamo_only(module):  # the same wrapper (and `_orig_mod.` names), traced without compiling the graphs
        calls.append(module)
        return compiled(module, backend="eager")

    monkeypatch.setattr(train_mod, "compiled", dynamo_only)
    cfg = build_config(None, [*TINY_SETTINGS, "train.compile=true", "train.max_steps=6", "train.eval_every=6"])
    train_mod.train(cfg, tiny_corpus, tmp_path / "m")
    assert len(calls) == 1
    model, *_ = checkpoint.load(tmp_path / "m")
    names = load_file(str(find_state(tmp_path / "m") / "state.safetensors")).keys()
    assert not any("_orig_mod" in k for k in names) and any(k.startswith("model.encoder.") for k in names)
    assert all(torch.isfinite(p).all() for p in model.parameters())
