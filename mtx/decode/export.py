"""`mtx export --format ct2`: a model directory as a CTranslate2 model, through CTranslate2's own spec API.

The spec is built from mtx's weights layer by layer: fused Q/K/V of self-attention, Q and fused K/V of
cross-attention, the pre- or post-norm LayerNorms in CTranslate2's places, mtx's own position table (its layout,
sin/cos interleaved from position 0, differs from CTranslate2's built-in sinusoids), the √d embedding scale, the
tied (or not) output layer with its bias, and EOS appended to every source as mtx does. Beside the model:
mtx's `tokenizer.model`, `mtx.json` (the pairs, tags and decoding settings the engine in ct2.py needs) and the
shortlist, if the model has one, as CTranslate2's vocabulary map `vmap.txt`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from mtx import checkpoint
from mtx.config import Config
from mtx.data.pairs import pairs_of, tag, tagged
from mtx.data.shortlist import SHORTLIST
from mtx.errors import MtxError, UsageError
from mtx.files import atomic_write, check_clearable

QUANTIZATIONS = ("int8", "int8_float32", "int16", "float16", "bfloat16")
MTX_JSON = "mtx.json"


def engine_module():
    """The ctranslate2 package (imported when first needed: it is large)."""
    try:
        import ctranslate2
    except ImportError:
        raise MtxError("--format ct2 needs the ctranslate2 package (pip install ctranslate2)") from None
    return ctranslate2


def _np(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _linear(spec, layer) -> None:
    spec.weight = _np(layer.weight)
    if layer.bias is not None:
        spec.bias = _np(layer.bias)


def _norm(spec, norm) -> None:
    spec.gamma, spec.beta = _np(norm.weight), _np(norm.bias)


def build_spec(model, tokenizer):
    """The CTranslate2 `TransformerSpec` holding `model`'s weights and `tokenizer`'s pieces as vocabularies."""
    specs = engine_module().specs
    c = model.config
    # return_attention (serve's HTML tags): the last layer's heads averaged (CTranslate2 takes one layer)
    spec = specs.TransformerSpec.from_config((c.enc_layers, c.dec_layers), c.n_heads, pre_norm=c.pre_norm,
                                             alignment_layer=-1, alignment_heads=c.n_heads)  # fmt: skip
    spec.config.layer_norm_epsilon = 1e-5  # torch's LayerNorm default
    spec.config.add_source_eos = True  # mtx sources are `x EOS`
    positions = _np(model.pos)
    enc, dec = spec.encoder, spec.decoder
    enc.embeddings[0].weight = _np(model.src_embed.weight)
    dec.embeddings.weight = _np(model.tgt_embed.weight)
    for side in (enc, dec):
        side.scale_embeddings = True  # x * sqrt(d) + position
        side.position_encodings.encodings = positions
    if c.pre_norm:
        _norm(enc.layer_norm, model.enc_norm)
        _norm(dec.layer_norm, model.dec_norm)
    for s, layer in zip(enc.layer, model.encoder, strict=True):
        _linear(s.self_attention.linear[0], layer.attn.qkv)
        _linear(s.self_attention.linear[1], layer.attn.out)
        _norm(s.self_attention.layer_norm, layer.res_attn.norm)
        _feed_forward(s.ffn, layer.ff, layer.res_ff.norm)
    for s, layer in zip(dec.layer, model.decoder, strict=True):
        _linear(s.self_attention.linear[0], layer.self_attn.qkv)
        _linear(s.self_attention.linear[1], layer.self_attn.out)
        _norm(s.self_attention.layer_norm, layer.res_self.norm)
        _linear(s.attention.linear[0], layer.cross_attn.q)
        _linear(s.attention.linear[1], layer.cross_attn.kv)
        _linear(s.attention.linear[2], layer.cross_attn.out)
        _norm(s.attention.layer_norm, layer.res_cross.norm)
        _feed_forward(s.ffn, layer.ff, layer.res_ff.norm)
    out = model.tgt_embed if model.out_proj is None else model.out_proj
    dec.projection.weight = _np(out.weight)
    dec.projection.bias = _np(model.out_bias)
    pieces = [tokenizer.sp.id_to_piece(i) for i in range(len(tokenizer))]
    spec.register_source_vocabulary(pieces)
    spec.register_target_vocabulary(pieces)
    return spec


def _feed_forward(spec, ff, norm) -> None:
    _linear(spec.linear_0, ff.w1)
    _linear(spec.linear_1, ff.w2)
    _norm(spec.layer_norm, norm)


def export_ct2(model_dir: Path, out: Path, quantize: str | None = None, force: bool = False) -> Path:
    """Write `model_dir` as a CTranslate2 model directory `out` (with the tokenizer and `mtx.json`)."""
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UsageError(f"--quantize {quantize!r}: expected one of {', '.join(QUANTIZATIONS)}")
    if out.exists() and not force:
        raise UsageError(f"{out}: exists (use --force to replace it)")
    check_replaceable(model_dir, out)
    model, tokenizer, cfg, _ = checkpoint.load(model_dir)
    if cfg.model.arch != "transformer":
        raise UsageError(
            f"{model_dir}: model.arch={cfg.model.arch}; CTranslate2 runs Transformers, not mtx's RNN encoder-decoder"
        )
    ct2 = engine_module()

    class _Converter(ct2.converters.Converter):
        def _load(self):
            return build_spec(model, tokenizer)

    shortlist = model_dir / SHORTLIST  # CTranslate2's vocabulary map (vmap.txt), used with use_vmap
    vmap = str(shortlist) if shortlist.is_file() else None
    _Converter().convert(str(out), vmap=vmap, quantization=quantize, force=True)
    shutil.copyfile(model_dir / checkpoint.TOKENIZER, out / checkpoint.TOKENIZER)
    trained = pairs_of(cfg.data)
    info = {
        "source": str(model_dir),
        "quantization": quantize or "none",
        "pairs": [f"{s}-{t}" for s, t in trained],
        "tags": {t: tag(t) for _, t in trained} if tagged(trained) else {},
        "config": cfg.to_dict(),
    }
    atomic_write(out / MTX_JSON, (json.dumps(info, indent=2) + "\n").encode())
    return out


def check_replaceable(model_dir: Path, out: Path) -> None:
    """The converter empties `out` first: refuse an `out` that is the model directory, holds it or is inside it
    (but MODEL/ct2, the engine's own), the working directory or a folder above it, or a directory that holds
    something other than an earlier export."""
    m, o = model_dir.resolve(), out.resolve()
    if o == m or o in m.parents or (m in o.parents and o != m / "ct2"):
        raise UsageError(f"{out}: is the model directory {model_dir}, holds it or is inside it; export elsewhere")
    check_clearable(out, "export to")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory; export elsewhere")
    if out.is_dir() and any(out.iterdir()) and not (out / MTX_JSON).is_file():
        raise UsageError(f"{out}: not empty and not an earlier export (no {MTX_JSON}); export elsewhere")


def read_exported(path: Path) -> tuple[dict, Config]:
    """(`mtx.json` as written by `export_ct2`, the mtx config inside it) of an exported directory."""
    source = path / MTX_JSON
    try:
        info = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MtxError(f"{source}: unreadable ({e})") from None
    return info, Config.from_dict(info["config"], str(path))
