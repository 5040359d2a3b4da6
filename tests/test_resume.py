"""Interrupted training resumes exactly; a training process killed at any moment leaves a resumable state."""

import os
import random
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
from mtx.cli import app
from mtx.config import Config, build_config
from mtx.errors import MtxError
from mtx.train import train
from mtx.train_state import find_state, load_state

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
    train(_cfg(), tiny_corpus, straight, log=lambda s: None)
    first = train(_cfg(), tiny_corpus, parted, log=lambda s: None, should_stop=lambda step: step == 17)
    assert first["stop"] == "interrupted" and first["steps"] == 17
    info, _, _ = load_state(find_state(parted))
    assert info["step"] == 17
    resumed = train(Config.from_dict(info["config"]), tiny_corpus, parted, log=lambda s: None, resume=parted)
    assert resumed["steps"] == STEPS and resumed["stop"] == "max_steps"
    a, b = _params(straight), _params(parted)
    assert a.keys() == b.keys() and len(a) > 10 and any(k.startswith("avg.") for k in a)
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff == 0.0, f"max parameter difference {diff}"


def test_resume_through_cli_and_keep_last(tiny_corpus, tmp_path):
    out = tmp_path / "m"
    args = ["train", "--data", str(tiny_corpus), "--out", str(out), "--device", "cpu"]
    for s in [*TINY_SETTINGS, "train.max_steps=20", "train.save_every=5", "train.keep_last=2"]:
        args += ["--set", s]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert sorted(p.name for p in out.glob("state-*")) == ["state-15", "state-20"]
    r = CliRunner().invoke(
        app, ["train", "--resume", str(out), "--data", str(tiny_corpus), "--set", "train.max_steps=30"]
    )
    assert r.exit_code == 0, r.output
    assert "resuming from" in r.stderr and (out / "latest").read_text() == "state-30"
    checkpoint.load(out)


def test_resume_errors(tmp_path):
    with pytest.raises(MtxError, match="nothing to resume"):
        find_state(tmp_path / "none")
    (tmp_path / "latest").write_text("state-9")
    with pytest.raises(MtxError, match="incomplete or missing"):
        find_state(tmp_path)


def test_sigkill_at_a_random_moment_then_resume(tiny_corpus, tmp_path):
    """kill -9 while training (and saving every 3 steps): the last complete state loads and training resumes."""
    out = tmp_path / "m"
    args = [sys.executable, "-m", "mtx", "train", "--data", str(tiny_corpus), "--out", str(out), "--device", "cpu"]
    for s in [*TINY_SETTINGS, "train.max_steps=100000", "train.save_every=3", "train.eval_every=50"]:
        args += ["--set", s]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    try:
        deadline = time.time() + 120
        while not (out / "latest").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert (out / "latest").exists(), "training never saved a state"
        time.sleep(random.Random().uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    info, _, _ = load_state(find_state(out))
    r = CliRunner().invoke(
        app, ["train", "--resume", str(out), "--data", str(tiny_corpus), "--set", f"train.max_steps={info['step'] + 4}"]
    )
    assert r.exit_code == 0, r.output
    assert load_state(find_state(out))[0]["step"] == info["step"] + 4


def test_sigterm_saves_a_resumable_state(tiny_corpus, tmp_path):
    out = tmp_path / "m"
    args = [sys.executable, "-m", "mtx", "train", "--data", str(tiny_corpus), "--out", str(out), "--device", "cpu"]
    for s in [*TINY_SETTINGS, "train.max_steps=100000", "train.save_every=0", "train.eval_every=100000"]:
        args += ["--set", s]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        # wait until the model is built (the line is printed before the loop starts)
        time.sleep(0.2)
        if (out / "train_log.jsonl").exists():
            time.sleep(0.5)
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "interrupted at step" in err
    info, _, _ = load_state(find_state(out))
    assert info["step"] > 0
    checkpoint.load(out)


def test_time_budget_counts_training_from_the_first_step(tiny_corpus, tmp_path, monkeypatch):
    """The budget covers steps, validations and saves; data and tokenizer come before it. The weight average's
    snapshots follow the time-based progress too."""
    import mtx.train as train_mod

    slow = train_mod.prepare_data

    def prepare_data(*args, **kw):
        time.sleep(4.0)  # slow data preparation does not eat into the training budget
        return slow(*args, **kw)

    monkeypatch.setattr(train_mod, "prepare_data", prepare_data)
    cfg = build_config(None, [*TINY_SETTINGS, "train.max_steps=0", "train.time_budget_min=0.12", "train.average=2"])
    result = train(cfg, tiny_corpus, tmp_path / "m", log=lambda s: None)
    assert result["stop"] == "time_budget" and result["steps"] > 10
    assert result["train_minutes"] <= 0.12 + 0.02  # the last validation fits in the reserve
    assert result["total_minutes"] - result["train_minutes"] >= 0.06
    assert result["history"][-1]["averaged"] == 3  # 2 snapshots and the final weights
