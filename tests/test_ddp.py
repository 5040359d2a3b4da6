"""torchrun with 2 CPU processes (gloo) follows the same curve as 1 process accumulating the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_SETTINGS
from safetensors.torch import load_file

from mtx.config import build_config
from mtx.train.distributed import launch_command
from mtx.train.loop import train
from mtx.train.plots import read_log
from mtx.train.state import find_state

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
    summary = train(cfg, tiny_corpus, one_out)
    assert summary["steps"] == STEPS

    a, b = _params(ddp_out), _params(one_out)
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff < 1e-4, f"max parameter difference {diff}"
    # Only rank 0 wrote: one log line per validation; and training moved (the loss fell).
    log = read_log(ddp_out)[1]  # the validations
    assert [x["step"] for x in log] == [6, 12] and log[1]["valid_loss"] < log[0]["valid_loss"]
    print(f"max parameter difference, 2-process DDP vs 1 process with accum 2: {diff:.2e}")


def test_time_budget_with_a_slow_rank_keeps_replicas_identical(tiny_corpus, tmp_path):
    """2 processes under a 0.1-minute budget by clocks a step advances (0.1 s on rank 0, 0.15 s on rank 1: about
    34 steps, whatever the machine's speed): progress, lr, averaging and the stop are agreed (rank 0's clock), so
    both end at the same step with identical parameters. Rank 0 alone trains the
    tokenizer, and each rank draws its own dropout masks."""
    out = tmp_path / "m"
    settings = [*TINY_SETTINGS, "train.max_steps=0", "train.time_budget_min=0.1", "train.log_every=5"]
    settings += ["model.dropout=0.1", "train.average=2", "train.threads=1"]
    worker = str(Path(__file__).parent / "ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", worker]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    env["HF_HOME"] = str(tmp_path / "hf")  # empty caches: rank 0 trains the tokenizer and encodes, rank 1 reads
    r = subprocess.run(
        [*cmd, str(tiny_corpus), str(out), *settings], capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 0, r.stderr[-3000:]
    s0, s1 = (json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1))
    assert s0["stop"] == s1["stop"] == "time_budget" and s0["steps"] == s1["steps"] > 20
    assert (s0["tokenizers"], s1["tokenizers"]) == (1, 0)
    assert s0["rng"] != s1["rng"]  # dropout streams of their own
    assert s0["left_group"] and s1["left_group"]  # each rank left the process group when training ended
    a, b = (load_file(str(out / f"rank{i}.safetensors")) for i in (0, 1))
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff == 0.0, f"replicas drifted apart: max parameter difference {diff}"


def test_gpus_without_enough_cuda_devices_is_a_usage_error(tmp_path):
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has 2 GPUs")
    r = subprocess.run([sys.executable, "-m", "mtx", "train", "--gpus", "2"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("mtx: error: --gpus 2: this machine has"), r.stderr
