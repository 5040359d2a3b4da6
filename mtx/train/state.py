"""Resumable training state: model, optimizer, RNG, step and data position, written atomically.

Layout inside the model directory: `state-{step}/` folders (tensors in `state.safetensors`, the rest in
`state.json`, the tokenizer beside them) and a `latest` file naming the newest complete one, updated last. A
crash at any moment leaves `latest` pointing at a complete folder. Nothing here unpickles: safetensors and JSON.
Only folders named `state-<digits>` are states; `latest` names one of them, inside the model directory.

A training claims its model directory (`claim`): a lock file while it runs, so that two trainings never write
into one directory, and a directory that holds an earlier model is refused unless the training resumes it or is
told to overwrite it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from mtx.checkpoint import CONFIG, TOKENIZER, WEIGHTS, load_weights, state_tensors
from mtx.errors import MtxError, UsageError
from mtx.files import atomic_write, atomic_write_tensors, check_clearable, fsync_dir

LATEST = "latest"
LOCK = ".lock"
STATE_VERSION = 1
STATE = re.compile(r"state-(\d+)")
# what a model directory holds: --overwrite empties only a directory with all of these (or resumable states)
MODEL_FILES = (CONFIG, WEIGHTS, TOKENIZER)


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
    tmp, old = out_dir / f".state-{step}.tmp{os.getpid()}", out_dir / f".state-{step}.old{os.getpid()}"
    try:
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
        if final.exists():  # the same step again: the old folder goes only once the new one is in its place
            os.replace(final, old)
        os.replace(tmp, final)
        atomic_write(out_dir / LATEST, final.name.encode())
    except (OSError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            os.replace(old, final)
        kept = (out_dir / LATEST).read_text().strip() if (out_dir / LATEST).is_file() else "none"
        reason = getattr(e, "strerror", None) or str(e)
        raise MtxError(f"{final}: cannot save the training state ({reason}); the last complete one: {kept}") from None
    shutil.rmtree(old, ignore_errors=True)
    for stale in states(out_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def states(model_dir: Path) -> list[Path]:
    """The resumable states in a model directory (`state-<step>` folders), oldest first."""
    found = [p for p in model_dir.iterdir() if p.is_dir() and STATE.fullmatch(p.name)] if model_dir.is_dir() else []
    return sorted(found, key=lambda p: int(p.name[len("state-") :]))


@contextlib.contextmanager
def claim(out_dir: Path, resume: Path | None, overwrite: bool) -> Iterator[None]:
    """Hold `out_dir` for one training: refused while another training holds it (its lock file names a live
    process); a directory with an earlier model in it only for the training that resumes it, or, with
    `overwrite`, emptied first."""
    if out_dir.is_symlink():
        raise UsageError(f"--out {out_dir}: is a symbolic link; name the directory itself")
    lock = out_dir / LOCK
    if lock.is_file() and _alive(lock):
        raise UsageError(f"{out_dir}: another training (pid {lock.read_text().strip()}) is writing here")
    resuming = resume is not None and model_dir_of(resume).resolve() == out_dir.resolve()
    taken = out_dir.is_dir() and any(p.name != LOCK for p in out_dir.iterdir())
    if taken and not resuming:
        if not overwrite:
            raise UsageError(
                f"{out_dir}: not empty (an earlier model?): continue it with --resume {out_dir}, replace it with "
                "--overwrite, or choose another --out"
            )
        check_clearable(out_dir, "--overwrite")
        if not is_model_dir(out_dir):
            raise UsageError(
                f"--overwrite {out_dir}: holds no mtx model ({', '.join(MODEL_FILES)} or resumable states); "
                "choose another --out"
            )
        for p in out_dir.iterdir():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(lock, str(os.getpid()).encode())
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        if created and not any(out_dir.iterdir()):  # a training that wrote nothing leaves nothing
            out_dir.rmdir()


def is_model_dir(path: Path) -> bool:
    """Whether `path` holds an mtx model (config, weights and tokenizer) or a training's resumable states."""
    whole = all((path / name).is_file() for name in MODEL_FILES)
    return whole or ((path / LATEST).is_file() and bool(states(path)))


def _alive(lock: Path) -> bool:
    """Whether the process a lock file names still runs (and is not this one)."""
    try:
        pid = int(lock.read_text().strip())
        if pid == os.getpid():
            return False
        os.kill(pid, 0)
    except PermissionError:  # it runs, as another user
        return True
    except (ValueError, OSError):
        return False
    return True


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
    name = latest.read_text().strip()
    if not STATE.fullmatch(name):
        raise MtxError(f"{latest}: names {name!r}, not a state folder of this directory (state-<step>)")
    path = resume / name
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
