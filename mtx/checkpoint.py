"""A model directory: `config.json`, `model.safetensors`, `tokenizer.model`. It alone rebuilds the translator.

Loading never runs code from the files (JSON and safetensors only). Every file is written to a temporary
name, flushed to disk, then renamed, so a crash leaves the previous complete file in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mtx.config import Config
from mtx.errors import MtxError, UsageError
from mtx.model import Transformer
from mtx.tokenizer import Tokenizer

FORMAT_VERSION = 1
CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.model"


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and persistent buffers, shared tensors stored once, contiguous, on CPU."""
    out, seen = {}, set()
    for name, t in model.state_dict().items():
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        out[name] = t.detach().to("cpu").contiguous()
    return out


def save(out_dir: Path, model: Transformer, tokenizer: Tokenizer, cfg: Config, meta: dict[str, Any] | None = None):
    """Write a complete model directory (weights first, config last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{WEIGHTS}.tmp{os.getpid()}"
    save_file(state_tensors(model), str(tmp), metadata={"format_version": str(FORMAT_VERSION)})
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out_dir / WEIGHTS)
    atomic_write(out_dir / TOKENIZER, tokenizer.proto)
    doc = {"format_version": FORMAT_VERSION, "config": cfg.to_dict(), "meta": meta or {}}
    atomic_write(out_dir / CONFIG, json.dumps(doc, indent=2).encode())


def load(model_dir: Path, device: str | torch.device = "cpu") -> tuple[Transformer, Tokenizer, Config, dict]:
    """Rebuild (model in eval mode, tokenizer, config, meta) from a model directory."""
    if not model_dir.is_dir():
        raise UsageError(f"{model_dir}: model directory not found (train one with `mtx train` or pass --model)")
    for name in (CONFIG, WEIGHTS, TOKENIZER):
        if not (model_dir / name).is_file():
            raise MtxError(f"{model_dir / name}: missing from the model directory")
    try:
        doc = json.loads((model_dir / CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MtxError(f"{model_dir / CONFIG}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        got = doc.get("format_version") if isinstance(doc, dict) else None
        raise MtxError(f"{model_dir / CONFIG}: checkpoint format {got!r}, this mtx reads {FORMAT_VERSION}")
    cfg = Config.from_dict(doc["config"], str(model_dir / CONFIG))
    tokenizer = Tokenizer.load(model_dir / TOKENIZER)
    if len(tokenizer) != cfg.model.vocab_size:
        raise MtxError(
            f"{model_dir / TOKENIZER}: vocabulary of {len(tokenizer)} pieces, the model has {cfg.model.vocab_size}"
        )
    try:
        tensors = load_file(str(model_dir / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise MtxError(f"{model_dir / WEIGHTS}: unreadable or truncated weights ({e})") from None
    model = Transformer(cfg.model)
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise MtxError(f"{model_dir / WEIGHTS}: weights do not match the config ({first})") from None
    missing = [k for k in missing if not (cfg.model.tie_embeddings and k == "src_embed.weight")]
    if missing or unexpected:
        raise MtxError(
            f"{model_dir / WEIGHTS}: weights do not match the config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    return model.to(device).eval(), tokenizer, cfg, doc.get("meta", {})
