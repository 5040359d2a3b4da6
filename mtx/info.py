"""What a model directory holds: the parameter arithmetic of the Transformer by component (each with its formula
in d, d_ff and V), the tokenizer, the training summary and the files. `mtx info` prints it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from mtx.config import Config, ModelConfig
from mtx.plots import LOG, read_log


@dataclass
class Part:
    """A component: its name, its parameter count as a formula and as a number, and the parameter names (prefixes)
    it covers in the model's `named_parameters()`."""

    name: str
    formula: str
    count: int
    prefixes: tuple[str, ...]


def parameter_parts(c: ModelConfig) -> list[Part]:
    """The model's parameters by component, from the config alone (heads split d; they add no parameters).

    A linear layer d_in -> d_out has d_in * d_out weights and d_out biases: self-attention's Q, K, V and output
    projections make 4d² + 4d, cross-attention the same (Q from the decoder, K and V from the encoder's output),
    the feed-forward block 2·d·d_ff + d_ff + d, a LayerNorm 2d (gain and bias)."""
    d, f, V = c.d_model, c.d_ff, c.vocab_size
    attn, ffn, norm = 4 * d * d + 4 * d, 2 * d * f + f + d, 2 * d
    parts = []
    if c.tie_embeddings:
        parts.append(Part("embeddings (source = target = output, tied)", "V·d", V * d, ("tgt_embed.",)))
    else:
        parts.append(Part("source embeddings", "V·d", V * d, ("src_embed.",)))
        parts.append(Part("target embeddings", "V·d", V * d, ("tgt_embed.",)))
        parts.append(Part("output projection", "V·d", V * d, ("out_proj.",)))
    parts.append(Part("output bias", "V", V, ("out_bias",)))
    for i in range(c.enc_layers):
        p = f"encoder.{i}."
        parts.append(Part(f"encoder {i}: self-attention", "4d² + 4d", attn, (p + "attn.",)))
        parts.append(Part(f"encoder {i}: feed-forward", "2·d·d_ff + d_ff + d", ffn, (p + "ff.",)))
        parts.append(Part(f"encoder {i}: 2 LayerNorms", "2 · 2d", 2 * norm, (p + "res_",)))
    if c.pre_norm:
        parts.append(Part("encoder: final LayerNorm (pre-norm)", "2d", norm, ("enc_norm.",)))
    for i in range(c.dec_layers):
        p = f"decoder.{i}."
        parts.append(Part(f"decoder {i}: self-attention", "4d² + 4d", attn, (p + "self_attn.",)))
        parts.append(Part(f"decoder {i}: cross-attention", "4d² + 4d", attn, (p + "cross_attn.",)))
        parts.append(Part(f"decoder {i}: feed-forward", "2·d·d_ff + d_ff + d", ffn, (p + "ff.",)))
        parts.append(Part(f"decoder {i}: 3 LayerNorms", "3 · 2d", 3 * norm, (p + "res_",)))
    if c.pre_norm:
        parts.append(Part("decoder: final LayerNorm (pre-norm)", "2d", norm, ("dec_norm.",)))
    return parts


def describe(model_dir: Path) -> dict:
    """Everything `mtx info` shows, as one JSON-able dict."""
    from mtx import checkpoint

    model, tok, cfg, meta = checkpoint.load(model_dir)
    parts = parameter_parts(cfg.model)
    total = sum(p.numel() for p in model.parameters())
    history = read_log(model_dir)[1] if (model_dir / LOG).is_file() else []
    return {
        "model_dir": str(model_dir),
        "config": cfg.to_dict(),
        "parameters": {
            "total": total,
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
        "pair": f"{cfg.data.src}-{cfg.data.tgt}",
        "corpus": meta.get("corpus", "not recorded"),
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
    lines.append(f"parameters: {p['total']:,} (d = {p['d']}, d_ff = {p['d_ff']}, V = {p['V']}, {p['heads']} heads)")
    width = max(len(x["name"]) for x in p["by_component"])
    for x in p["by_component"]:
        lines.append(f"  {x['name']:<{width}}  {x['formula']:<20} {x['count']:>12,}")
    lines.append(f"  {'sum':<{width}}  {'':<20} {sum(x['count'] for x in p['by_component']):>12,}")
    t = info["tokenizer"]
    lines += ["", f"tokenizer: {t['pieces']} pieces, {t['type']}, character coverage {t['character_coverage']}"]
    lines += ["", "training:"] + [f"  {k}: {v}" for k, v in info["training"].items()]
    lines += ["", "config:"]
    for section, values in info["config"].items():
        lines.append(f"  [{section}] " + ", ".join(f"{k}={v}" for k, v in values.items()))
    lines += ["", "files:"] + [f"  {name}: {size:,} bytes" for name, size in info["files"].items()]
    return "\n".join(lines)
