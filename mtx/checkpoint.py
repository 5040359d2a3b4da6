"""A model directory: `config.json`, `model.safetensors`, `tokenizer.model`. It alone rebuilds the translator.

Loading never runs code from the files (JSON and safetensors only). Every file is written to a temporary
name, flushed to disk, then renamed, so a crash leaves the previous complete file in place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from mtx.config import Config
from mtx.data.tokenizer import Tokenizer
from mtx.errors import MtxError, UsageError
from mtx.files import atomic_write, atomic_write_tensors
from mtx.models.base import Seq2Seq, build_model

FORMAT_VERSION = 1
CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.model"


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and persistent buffers, shared tensors stored once, contiguous, on CPU."""
    out, seen = {}, set()
    for name, t in model.state_dict().items():
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        out[name] = t.detach().to("cpu").contiguous()
    return out


def save(out_dir: Path, model: Seq2Seq, tokenizer: Tokenizer, cfg: Config, meta: dict[str, Any] | None = None):
    """Write a complete model directory (weights first, config last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_tensors(out_dir / WEIGHTS, state_tensors(model), {"format_version": str(FORMAT_VERSION)})
    atomic_write(out_dir / TOKENIZER, tokenizer.proto)
    doc = {"format_version": FORMAT_VERSION, "config": cfg.to_dict(), "meta": meta or {}}
    atomic_write(out_dir / CONFIG, json.dumps(doc, indent=2).encode())


def read_config(model_dir: Path) -> tuple[Config, dict]:
    """A model directory's (config, meta), checked, without reading the weights."""
    if not model_dir.is_dir():
        raise UsageError(f"{model_dir}: model directory not found (train one with `mtx train` or pass --model)")
    if not (model_dir / CONFIG).is_file():
        raise MtxError(f"{model_dir / CONFIG}: missing from the model directory")
    try:
        doc = json.loads((model_dir / CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MtxError(f"{model_dir / CONFIG}: not valid JSON ({e})") from None
    except RecursionError:
        raise MtxError(f"{model_dir / CONFIG}: not a config (nested too deeply)") from None
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        got = doc.get("format_version") if isinstance(doc, dict) else None
        raise MtxError(f"{model_dir / CONFIG}: checkpoint format {got!r}, this mtx reads {FORMAT_VERSION}")
    if not isinstance(doc.get("config"), dict) or not isinstance(doc.get("meta", {}), dict):
        raise MtxError(f"{model_dir / CONFIG}: no config table (was it written by mtx?)")
    return Config.from_dict(doc["config"], str(model_dir / CONFIG)), doc.get("meta", {})


def load(model_dir: Path, device: str | torch.device = "cpu") -> tuple[Seq2Seq, Tokenizer, Config, dict]:
    """Rebuild (model in eval mode, tokenizer, config, meta) from a model directory."""
    for name in (CONFIG, WEIGHTS, TOKENIZER):
        if model_dir.is_dir() and not (model_dir / name).is_file():
            raise MtxError(f"{model_dir / name}: missing from the model directory")
    cfg, meta = read_config(model_dir)
    tokenizer = Tokenizer.load(model_dir / TOKENIZER)
    if len(tokenizer) != cfg.model.vocab_size:
        raise MtxError(
            f"{model_dir / TOKENIZER}: vocabulary of {len(tokenizer)} pieces, the model has {cfg.model.vocab_size}"
        )
    try:
        check_shapes(cfg, model_dir / WEIGHTS)  # before anything of the config's size is allocated
        tensors = load_file(str(model_dir / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise MtxError(f"{model_dir / WEIGHTS}: unreadable or truncated weights ({e})") from None
    model = build_model(cfg.model)
    load_weights(model, tensors, str(model_dir / WEIGHTS))
    return model.to(device).eval(), tokenizer, cfg, meta


def check_shapes(cfg: Config, path: Path) -> None:
    """The tensors a weights file's header declares are those of the model `cfg` builds (a model built on the
    meta device: no memory), so that a config that does not fit its weights allocates nothing."""
    with torch.device("meta"):
        want = {k: tuple(t.shape) for k, t in build_model(cfg.model).state_dict().items()}
    with safe_open(str(path), framework="pt") as f:
        have = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (a safetensors handle)
    if cfg.model.tie_embeddings:
        want.pop("src_embed.weight", None)
    for name in sorted(set(want) | set(have)):
        if want.get(name) != have.get(name):
            got = "missing" if name not in have else f"{list(have[name])}"
            expected = "none" if name not in want else f"{list(want[name])}"
            raise MtxError(f"{path}: weights do not match the config ({name}: {got} in the file, the config "
                           f"makes {expected})")  # fmt: skip


def load_weights(model: Seq2Seq, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load saved weights into `model`; any missing, unexpected or misshapen tensor is an error naming `source`
    (a tied source embedding is stored once, as the target embedding)."""
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise MtxError(f"{source}: weights do not match the config ({first})") from None
    missing = [k for k in missing if not (model.config.tie_embeddings and k == "src_embed.weight")]
    if missing or unexpected:
        raise MtxError(
            f"{source}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
