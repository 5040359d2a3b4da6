"""torchrun with 2 CPU processes (gloo) follows the same curve as 1 process accumulating the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import TINY_SETTINGS
from safetensors.torch import load_file

from mtx.config import build_config
from mtx.distributed import launch_command
from mtx.train import train
from mtx.train_state import find_state

STEPS = 12
SETTINGS = [*TINY_SETTINGS, f"train.max_steps={STEPS}", "train.eval_every=6", "train.threads=1"]


def _params(out):
    t = load_file(str(find_state(out) / "state.safetensors"))
    return {k: v for k, v in t.items() if k.startswith("model.")}


def test_two_process_ddp_equals_one_process_with_accumulation(tiny_corpus, tmp_path):
    ddp_out, one_out = tmp_path / "ddp", tmp_path / "one"
    # the command `mtx train --gpus 2` runs (torchrun --standalone), here with 2 CPU processes
    cmd = launch_command(2, ["train", "--data", str(tiny_corpus), "--out", str(ddp_out), "--device", "cpu"])
    for s in SETTINGS:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]

    cfg = build_config(None, [*SETTINGS, "train.accum=2"])
    summary = train(cfg, tiny_corpus, one_out, log=lambda s: None)
    assert summary["steps"] == STEPS

    a, b = _params(ddp_out), _params(one_out)
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff < 1e-4, f"max parameter difference {diff}"
    # Only rank 0 wrote: one log line per validation; and training moved (the loss fell).
    log = [json.loads(x) for x in (ddp_out / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [6, 12] and log[1]["valid_loss"] < log[0]["valid_loss"]
    print(f"max parameter difference, 2-process DDP vs 1 process with accum 2: {diff:.2e}")


def test_gpus_without_enough_cuda_devices_is_a_usage_error(tmp_path):
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has 2 GPUs")
    r = subprocess.run([sys.executable, "-m", "mtx", "train", "--gpus", "2"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("mtx: error: --gpus 2: this machine has"), r.stderr
