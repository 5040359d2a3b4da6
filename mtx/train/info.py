"""What a model directory holds: its parameters by component, each with its formula in d, d_ff and V
(mtx/models/parameters.py), the tokenizer, the training summary and the files. `mtx info` prints it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from mtx import checkpoint
from mtx.config import Config
from mtx.data.pairs import name, pairs_of
from mtx.models.parameters import parameter_parts
from mtx.train.plots import LOG, read_log


def describe(model_dir: Path) -> dict:
    """Everything `mtx info` shows, as one JSON-able dict."""
    model, tok, cfg, meta = checkpoint.load(model_dir)
    parts = parameter_parts(cfg.model)
    total = sum(p.numel() for p in model.parameters())
    history = read_log(model_dir)[1] if (model_dir / LOG).is_file() else []
    return {
        "model_dir": str(model_dir),
        "config": cfg.to_dict(),
        "parameters": {
            "total": total,
            "arch": cfg.model.arch if cfg.model.arch == "transformer" else f"rnn ({cfg.model.rnn_cell})",
            "by_component": [{k: v for k, v in asdict(p).items() if k != "prefixes"} for p in parts],
            "d": cfg.model.d_model,
            "d_ff": cfg.model.d_ff,
            "V": cfg.model.vocab_size,
            "heads": cfg.model.n_heads,
        },
        "tokenizer": {
            "pieces": len(tok),
            "type": cfg.data.spm_model_type,
            "character_coverage": cfg.data.spm_character_coverage,
        },
        "training": _training(cfg, meta, history),
        "files": {p.name: p.stat().st_size for p in sorted(model_dir.iterdir()) if p.is_file()},
    }


def _training(cfg: Config, meta: dict, history: list[dict]) -> dict:
    last = history[-1] if history else {}
    return {
        "pairs": ", ".join(name(p) for p in pairs_of(cfg.data)),
        "corpus": meta.get("corpus", "not recorded"),
        "started from": cfg.train.init or "new weights",
        "splits (train / valid)": f"{cfg.data.train_split} / {cfg.data.valid_split}",
        "device": cfg.train.device,
        "steps": last.get("step"),
        "train_minutes": round(last["train_s"] / 60, 2) if "train_s" in last else None,
        "kept": {k: round(meta[k], 3) for k in ("step", "valid_loss", "valid_bleu", "averaged") if k in meta},
        "validations": len(history),
    }


def render(info: dict) -> str:
    """The text form of `describe`'s dict."""
    p = info["parameters"]
    lines = [f"model: {info['model_dir']}", ""]
    shape = f"d_ff = {p['d_ff']}, V = {p['V']}, {p['heads']} heads" if p["arch"] == "transformer" else f"V = {p['V']}"
    lines.append(f"parameters: {p['total']:,} ({p['arch']}, d = {p['d']}, {shape})")
    width = max(len(x["name"]) for x in p["by_component"])
    fw = max(len(x["formula"]) for x in p["by_component"])
    for x in p["by_component"]:
        lines.append(f"  {x['name']:<{width}}  {x['formula']:<{fw}} {x['count']:>12,}")
    lines.append(f"  {'sum':<{width}}  {'':<{fw}} {sum(x['count'] for x in p['by_component']):>12,}")
    t = info["tokenizer"]
    lines += ["", f"tokenizer: {t['pieces']} pieces, {t['type']}, character coverage {t['character_coverage']}"]
    lines += ["", "training:"] + [f"  {k}: {v}" for k, v in info["training"].items()]
    lines += ["", "config:"]
    for section, values in info["config"].items():
        lines.append(f"  [{section}] " + ", ".join(f"{k}={v}" for k, v in values.items()))
    lines += ["", "files:"] + [f"  {name}: {size:,} bytes" for name, size in info["files"].items()]
    return "\n".join(lines)
