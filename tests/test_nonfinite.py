"""A non-finite loss skips its update and is counted; many in a row stop training with a clear error."""

import math

import pytest
import torch
from conftest import TINY_SETTINGS
from safetensors.torch import load_file

import mtx.train.loop as train_mod
import mtx.train.step as step_mod
from mtx import checkpoint
from mtx.config import build_config
from mtx.errors import MtxError
from mtx.train.state import find_state


def _poison(monkeypatch, bad_steps):
    """Make the training loss NaN at the given (1-based) steps."""
    real, calls = step_mod.loss_fn, {"n": 0}

    def loss_fn(logits, target, smoothing):
        loss = real(logits, target, smoothing)
        if smoothing > 0 or logits.requires_grad:  # training calls only, not validation
            calls["n"] += 1
            if bad_steps(calls["n"]):
                return loss * float("nan")
        return loss

    monkeypatch.setattr(step_mod, "loss_fn", loss_fn)


def _cfg(steps, **extra):
    sets = [f"train.max_steps={steps}", "train.save_every=0", "train.log_every=4", "train.eval_every=1000"]
    return build_config(None, [*TINY_SETTINGS, *sets, *(f"train.{k}={v}" for k, v in extra.items())])


def _params(out):
    t = load_file(str(find_state(out) / "state.safetensors"))
    return {k: v for k, v in t.items() if k.startswith("model.")}


def test_nonfinite_steps_are_skipped_and_counted(tiny_corpus, tmp_path, monkeypatch):
    _poison(monkeypatch, lambda n: n > 6)  # steps 7..9 are NaN: the parameters must not move
    summary = train_mod.train(_cfg(9), tiny_corpus, tmp_path / "b", should_stop=lambda s: s == 6)
    assert summary["steps"] == 6
    before = _params(tmp_path / "b")
    resumed = train_mod.train(_cfg(9), tiny_corpus, tmp_path / "b", resume=tmp_path / "b")
    assert resumed["nonfinite_steps"] == 3 and resumed["steps"] == 9
    after = _params(tmp_path / "b")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values())


def test_many_nonfinite_in_a_row_stop_with_a_clear_error(tiny_corpus, tmp_path, monkeypatch):
    _poison(monkeypatch, lambda n: n > 5)
    cfg = _cfg(200, eval_every=5, max_nonfinite=6)
    with pytest.raises(MtxError, match="training diverged: .* non-finite losses in a row"):
        train_mod.train(cfg, tiny_corpus, tmp_path / "m")
    model, *_ = checkpoint.load(tmp_path / "m")  # the model saved at step 5 is intact
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("scale", [1.0, 1e-5])  # gradient norms far above and near max_norm
def test_clip_grad_norm_matches_torch(scale):
    from conftest import random_model

    for max_norm in (0.0, 1e-3, 1e3):
        a, b = random_model(seed=1), random_model(seed=1)
        src, tgt = torch.randint(4, 50, (2, 5)), torch.randint(4, 50, (2, 4))
        for m in (a, b):
            (m(src, torch.ones(2, 5, dtype=torch.bool), tgt).sum() * scale).backward()
        got = step_mod.clip_grad_norm(list(a.parameters()), max_norm)
        want = torch.nn.utils.clip_grad_norm_(b.parameters(), max_norm or math.inf)
        torch.testing.assert_close(got, want)
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad)


def test_logged_loss_leaves_out_skipped_steps(tiny_corpus, tmp_path, monkeypatch):
    """The status line's loss is the mean over the window's finite updates: a skipped step's tokens do not count."""
    import re

    _poison(monkeypatch, lambda n: n == 5)  # step 5 (in the window of steps 4-6) is NaN
    steps, shown = [], []
    real_step = train_mod.train_step

    def train_step(model, opt, batches, *args):
        loss, bad = real_step(model, opt, batches, *args)
        steps.append((loss.item(), bool(bad), sum(b.n_tgt_tokens for b in batches)))
        return loss, bad

    monkeypatch.setattr(train_mod, "train_step", train_step)
    monkeypatch.setattr(train_mod.StatusLine, "show", lambda self, text: shown.append(text))
    cfg = _cfg(6, log_every=3)
    train_mod.train(cfg, tiny_corpus, tmp_path / "m")
    window = steps[3:6]
    assert [bad for _, bad, _ in window] == [False, True, False]
    good = [(loss, n) for loss, bad, n in window if not bad]
    want = sum(loss for loss, _ in good) / sum(n for _, n in good)
    got = float(re.search(r"loss ([0-9.]+)", shown[1]).group(1))
    assert got == pytest.approx(want, abs=1e-3)


def test_a_non_finite_gradient_with_a_finite_loss_skips_the_update():
    """One parameter's gradient made infinite (the loss stays finite): the step is flagged and changes nothing."""
    from conftest import random_model

    from mtx.config import TrainConfig
    from mtx.data.batching import collate

    model = random_model(seed=0)
    tc = TrainConfig(amp="fp32")
    opt = step_mod.make_optimizer(model, tc)
    batch = collate([[5, 6, 7], [8, 9]], [[10, 11], [12]])
    before = [p.detach().clone() for p in model.parameters()]
    hook = next(model.parameters()).register_hook(lambda g: g * float("inf"))
    loss, bad = step_mod.train_step(model, opt, [batch], 1.0 / batch.n_tgt_tokens, tc, torch.device("cpu"))
    hook.remove()
    assert torch.isfinite(loss).item() and bad.item()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
