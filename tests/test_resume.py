"""Interrupted training resumes exactly; a training process killed at any moment leaves a resumable state."""

import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_SETTINGS
from safetensors.torch import load_file
from typer.testing import CliRunner

from mtx import checkpoint
from mtx.cli.main import app
from mtx.config import Config, TrainConfig, build_config
from mtx.errors import MtxError
from mtx.train.loop import train
from mtx.train.state import find_state, load_state

STEPS = 40


def _cfg() -> Config:
    extra = [f"train.max_steps={STEPS}", "train.eval_every=25", "train.save_every=0", "model.dropout=0.1"]
    extra += ["train.average=4", "train.average_frac=0.75"]  # snapshots from step 11 on: some before the stop
    return build_config(None, [*TINY_SETTINGS, *extra])


def _params(model_dir: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(find_state(model_dir) / "state.safetensors"))
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "optim.", "avg."))}


def test_interrupt_and_resume_equals_straight_run(tiny_corpus, tmp_path):
    straight, parted = tmp_path / "straight", tmp_path / "parted"
    train(_cfg(), tiny_corpus, straight)
    first = train(_cfg(), tiny_corpus, parted, should_stop=lambda step: step == 17)
    assert first["stop"] == "interrupted" and first["steps"] == 17
    info, _, _ = load_state(find_state(parted))
    assert info["step"] == 17
    resumed = train(Config.from_dict(info["config"]), tiny_corpus, parted, resume=parted)
    assert resumed["steps"] == STEPS and resumed["stop"] == "max_steps"
    a, b = _params(straight), _params(parted)
    assert a.keys() == b.keys() and len(a) > 10 and any(k.startswith("avg.") for k in a)
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff == 0.0, f"max parameter difference {diff}"


def _cli_train(tiny_corpus, out, *settings, resume=None):
    args = ["train", "--data", str(tiny_corpus), "--device", "cpu"]
    args += ["--resume", str(resume)] if resume else ["--out", str(out)]
    for item in [*([] if resume else TINY_SETTINGS), *settings]:
        args += ["--set", item]
    return CliRunner().invoke(app, args)


def test_resume_through_cli_and_keep_last(tiny_corpus, tmp_path):
    out = tmp_path / "m"
    assert _cli_train(tiny_corpus, out, "train.max_steps=20", "train.save_every=5", "train.keep_last=2").exit_code == 0
    assert sorted(p.name for p in out.glob("state-*")) == ["state-15", "state-20"]
    r = _cli_train(tiny_corpus, out, "train.max_steps=30", resume=out)
    assert r.exit_code == 0, r.output
    assert "resuming from" in r.stderr and (out / "latest").read_text() == "state-30"
    checkpoint.load(out)


def test_resume_from_a_state_folder_writes_to_its_model_directory(tiny_corpus, tmp_path):
    out = tmp_path / "m"
    assert _cli_train(tiny_corpus, out, "train.max_steps=20", "train.save_every=5", "train.keep_last=2").exit_code == 0
    r = _cli_train(tiny_corpus, None, "train.max_steps=30", resume=out / "state-15")
    assert r.exit_code == 0, r.output
    assert "state-15 (step 15" in r.stderr
    assert sorted(p.name for p in out.glob("state-*")) == ["state-25", "state-30"]
    assert (out / "latest").read_text() == "state-30" and not list(out.glob("state-*/state-*"))


def test_resume_refuses_a_changed_model_or_data(tiny_corpus, tmp_path):
    out = tmp_path / "m"
    assert _cli_train(tiny_corpus, out, "train.max_steps=5").exit_code == 0
    before = (out / "latest").read_text()
    for setting, message in [
        ("model.enc_layers=7", "model.enc_layers is 2 in the saved training and 7 now"),
        ("data.max_tokens=50", "data.max_tokens is 128 in the saved training and 50 now"),
        ("model.vocab_size=90", "model.vocab_size is 100 in the saved training and 90 now"),
    ]:
        r = _cli_train(tiny_corpus, None, "train.max_steps=10", setting, resume=out)
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert r.stderr.strip().splitlines()[-1].startswith(f"mtx: error: --resume: {message}"), r.stderr
    r = CliRunner().invoke(app, ["train", "--resume", str(out), "--src", "fr", "--data", str(tiny_corpus)])
    assert r.exit_code == 2 and "data.src is 'de' in the saved training and 'fr' now" in r.stderr
    assert (out / "latest").read_text() == before  # nothing was trained or written


def test_resume_applies_changed_optimizer_settings(tiny_corpus, tmp_path):
    out = tmp_path / "m"
    assert _cli_train(tiny_corpus, out, "train.max_steps=5").exit_code == 0
    r = _cli_train(tiny_corpus, None, "train.max_steps=8", "train.weight_decay=0.3", "train.betas=0.8,0.9", resume=out)
    assert r.exit_code == 0, r.output
    info, _, _ = load_state(find_state(out))
    one_d = 0.3 if TrainConfig().decay_1d else 0.0  # matrices, then 1-D tensors
    assert [g["weight_decay"] for g in info["param_groups"]] == [0.3, one_d]
    assert all(g["betas"] == [0.8, 0.9] for g in info["param_groups"])
    assert info["config"]["train"]["weight_decay"] == 0.3


def test_a_state_missing_a_tensor_is_an_error(tiny_corpus, tmp_path):
    from safetensors.torch import save_file

    out = tmp_path / "m"
    assert _cli_train(tiny_corpus, out, "train.max_steps=5").exit_code == 0
    path = find_state(out) / "state.safetensors"
    tensors = load_file(str(path))
    del tensors["model.encoder.0.ff.w1.weight"]
    save_file(tensors, str(path))
    r = _cli_train(tiny_corpus, None, "train.max_steps=8", resume=out)
    assert r.exit_code == 1 and "weights do not match the config (missing ['encoder.0.ff.w1.weight']" in r.stderr


def test_resume_errors(tmp_path):
    with pytest.raises(MtxError, match="nothing to resume"):
        find_state(tmp_path / "none")
    (tmp_path / "latest").write_text("state-9")
    with pytest.raises(MtxError, match="incomplete or missing"):
        find_state(tmp_path)


def _mtx_train_process(tiny_corpus, out, *settings):
    args = [sys.executable, "-m", "mtx", "train", "--data", str(tiny_corpus), "--out", str(out), "--device", "cpu"]
    for s in [*TINY_SETTINGS, "train.max_steps=100000", *settings]:
        args += ["--set", s]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_line(proc, text: str) -> list[str]:
    """Lines of the process's stderr up to the one containing `text` (driven by what it prints, not by time)."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"the process ended before printing {text!r}: {''.join(seen)[-2000:]}")


def test_sigkill_at_a_random_moment_then_resume(tiny_corpus, tmp_path):
    """kill -9 while training and saving every 3 steps, as soon as `latest` names a state of step >= a
    (seeded) random step: the last complete state loads and training resumes."""
    out = tmp_path / "m"
    kill_after = random.Random(7).randrange(3, 30)
    proc = _mtx_train_process(tiny_corpus, out, "train.save_every=3", "train.eval_every=50")
    try:
        _wait_for_line(proc, "training (Ctrl-C")
        latest = out / "latest"
        while proc.poll() is None:
            name = latest.read_text() if latest.exists() else "state-0"
            if int(name.split("-")[1] or 0) >= kill_after:
                break
            time.sleep(0.005)  # a polling interval, not a limit
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    info, _, _ = load_state(find_state(out))
    assert info["step"] >= kill_after
    r = _cli_train(tiny_corpus, None, f"train.max_steps={info['step'] + 4}", resume=out)
    assert r.exit_code == 0, r.output
    assert load_state(find_state(out))[0]["step"] == info["step"] + 4


def test_sigterm_saves_a_resumable_state(tiny_corpus, tmp_path):
    """SIGTERM once the loop has said it is listening: a resumable state, a validated checkpoint, exit 0."""
    out = tmp_path / "m"
    proc = _mtx_train_process(tiny_corpus, out, "train.save_every=0", "train.eval_every=100000")
    _wait_for_line(proc, "training (Ctrl-C")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    step = int(re.search(r"interrupted at step (\d+)", err).group(1))
    info, _, _ = load_state(find_state(out))
    assert info["step"] == step and checkpoint.load(out)[3]["step"] == step  # the state and the checkpoint


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_time_budget_with_a_fake_clock(tiny_corpus, tmp_path, monkeypatch):
    """A 15-second budget, steps of 0.1 s and validations of 0.5 s by an injected clock: data preparation (100 s)
    does not count; the schedule's progress runs evenly to its end, not to 1 at once; the final validations (the
    weights, the average) fit in the reserve; the average's snapshots follow the same progress."""
    import mtx.train.loop as train_mod

    clock, progress = FakeClock(), []
    real_prepare, real_step, real_validate, real_lr = (
        train_mod.prepare_data, train_mod.train_step, train_mod.validate, train_mod.lr_at
    )  # fmt: skip

    def prepare_data(*a, **k):
        clock.now += 100.0
        return real_prepare(*a, **k)

    def train_step(*a, **k):
        clock.now += 0.1
        return real_step(*a, **k)

    def validate(*a, **k):
        clock.now += 0.5
        return real_validate(*a, **k)

    def lr_at(step, frac, *a):
        progress.append(frac)
        return real_lr(step, frac, *a)

    for name, fn in [("prepare_data", prepare_data), ("train_step", train_step), ("validate", validate),
                     ("lr_at", lr_at)]:  # fmt: skip
        monkeypatch.setattr(train_mod, name, fn)
    settings = ["train.max_steps=0", "train.time_budget_min=0.25", "train.average=2", "train.eval_every=50"]
    result = train(build_config(None, [*TINY_SETTINGS, *settings]), tiny_corpus, tmp_path / "m", clock=clock)
    assert result["stop"] == "time_budget"
    assert result["train_minutes"] * 60 <= 15.0  # the final validations fitted
    assert result["total_minutes"] - result["train_minutes"] == pytest.approx(100 / 60, abs=0.01)
    assert result["history"][-1]["averaged"] == 3  # 2 snapshots and the final weights
    steps = result["steps"]
    # 15 s less the reserve (2 final validations of 0.5 s + 2 s) is 12 s, ~0.1 s a step, a validation at 50 and 100
    assert 105 <= steps <= 115, steps
    assert progress == sorted(progress) and progress[-1] >= 0.97
    assert progress[10] == pytest.approx(1.0 / 11.5, abs=0.01)  # 1 s of ~11.5 (until the first validation's cost)
