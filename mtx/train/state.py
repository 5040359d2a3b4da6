"""Resumable training state: model, optimizer, RNG, step and data position, written atomically.

Layout inside the model directory: `state-{step}/` folders (tensors in `state.safetensors`, the rest in
`state.json`, the tokenizer beside them) and a `latest` file naming the newest complete one, updated last. A
crash at any moment leaves `latest` pointing at a complete folder. Nothing here unpickles: safetensors and JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from mtx.checkpoint import load_weights, state_tensors
from mtx.errors import MtxError
from mtx.files import atomic_write, atomic_write_tensors, fsync_dir

LATEST = "latest"
STATE_VERSION = 1


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"optim.{i}.{k}"] = v.detach().to("cpu").contiguous() if torch.is_tensor(v) else torch.tensor(v)
    return out


def save_state(
    out_dir: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    tokenizer_proto: bytes,
    info: dict[str, Any],
    keep_last: int = 2,
    extra: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write `state-{step}/`, point `latest` at it, and delete all but the newest `keep_last` states.
    `extra`: more tensors to keep (e.g. the weight average), under their own names."""
    step = info["step"]
    final = out_dir / f"state-{step}"
    tmp = out_dir / f".state-{step}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {f"model.{k}": v for k, v in state_tensors(model).items()}
    tensors.update(optimizer_tensors(opt))
    tensors.update(extra or {})
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    atomic_write_tensors(tmp / "state.safetensors", tensors)
    atomic_write(tmp / "tokenizer.model", tokenizer_proto)
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.state_dict()["param_groups"]]
    doc = {"version": STATE_VERSION, **info, "param_groups": groups}
    atomic_write(tmp / "state.json", json.dumps(doc, indent=1).encode())
    fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write(out_dir / LATEST, final.name.encode())
    states = sorted(out_dir.glob("state-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in states[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def model_dir_of(resume: Path) -> Path:
    """The model directory of `--resume`: the directory itself, or the one a state folder is in."""
    return resume.parent if (resume / "state.json").is_file() else resume


def find_state(resume: Path) -> Path:
    """The state folder named by `resume/latest` (or `resume` itself if it is a state folder)."""
    if (resume / "state.json").is_file():
        return resume
    if not resume.is_dir():
        raise MtxError(f"{resume}: nothing to resume (directory not found)")
    latest = resume / LATEST
    if not latest.is_file():
        raise MtxError(f"{resume}: nothing to resume (no '{LATEST}' file; was it trained by this mtx?)")
    path = resume / latest.read_text().strip()
    if not (path / "state.json").is_file():
        raise MtxError(f"{latest}: names {path.name}, which is incomplete or missing")
    return path


def load_state(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], bytes]:
    """(info, tensors, tokenizer proto) of a state folder."""
    try:
        info = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MtxError(f"{path / 'state.json'}: unreadable ({e})") from None
    if info.get("version") != STATE_VERSION:
        raise MtxError(f"{path / 'state.json'}: state format {info.get('version')!r}, this mtx reads {STATE_VERSION}")
    try:
        tensors = load_file(str(path / "state.safetensors"))
        proto = (path / "tokenizer.model").read_bytes()
    except (SafetensorError, OSError, ValueError) as e:
        raise MtxError(f"{path}: unreadable or truncated training state ({e})") from None
    return info, tensors, proto


def restore(
    model: torch.nn.Module, opt: torch.optim.Optimizer, info: dict, tensors: dict[str, torch.Tensor], source: str
) -> None:
    """Load model, optimizer and RNG states saved by `save_state` into freshly built objects. The optimizer's
    moments come from the state; its hyperparameters (betas, weight decay) from `opt`, i.e. the current config."""
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    load_weights(model, weights, source)
    if len(info["param_groups"]) != len(opt.param_groups):
        raise MtxError(f"{source}: {len(info['param_groups'])} optimizer groups saved, {len(opt.param_groups)} now")
    device = next(model.parameters()).device
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v if name == "step" else v.to(device)
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})  # settings: current
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
