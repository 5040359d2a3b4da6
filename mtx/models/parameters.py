"""The parameter arithmetic of the Transformer (or the RNN) by component, each with its formula in d, d_ff and V,
from the config alone (`mtx info` shows it; a test checks it against the models' own parameters)."""

from __future__ import annotations

from dataclasses import dataclass

from mtx.config import ModelConfig


@dataclass
class Part:
    """A component: its name, its parameter count as a formula and as a number, and the parameter names (prefixes)
    it covers in the model's `named_parameters()`."""

    name: str
    formula: str
    count: int
    prefixes: tuple[str, ...]


def parameter_parts(c: ModelConfig) -> list[Part]:
    """The model's parameters by component, from the config alone."""
    return _embedding_parts(c) + (_rnn_parts(c) if c.arch == "rnn" else _transformer_parts(c))


def _embedding_parts(c: ModelConfig) -> list[Part]:
    d, V = c.d_model, c.vocab_size
    if c.tie_embeddings:
        parts = [Part("embeddings (source = target = output, tied)", "V·d", V * d, ("tgt_embed.",))]
    else:
        parts = [
            Part("source embeddings", "V·d", V * d, ("src_embed.",)),
            Part("target embeddings", "V·d", V * d, ("tgt_embed.",)),
            Part("output projection", "V·d", V * d, ("out_proj.",)),
        ]
    return parts + [Part("output bias", "V", V, ("out_bias",))]


def _transformer_parts(c: ModelConfig) -> list[Part]:
    """Heads split d; they add no parameters. A linear layer d_in -> d_out has d_in * d_out weights and d_out
    biases: self-attention's Q, K, V and output projections make 4d² + 4d, cross-attention the same (Q from the
    decoder, K and V from the encoder's output), the feed-forward block 2·d·d_ff + d_ff + d, a LayerNorm 2d
    (gain and bias)."""
    d, f = c.d_model, c.d_ff
    attn, ffn, norm = 4 * d * d + 4 * d, 2 * d * f + f + d, 2 * d
    parts = []
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


def _rnn_parts(c: ModelConfig) -> list[Part]:
    """A recurrent layer of h units over inputs of size i has, per gate (g = 3 for a GRU, 4 for an LSTM), an input
    matrix h·i, a recurrent matrix h·h and two biases (PyTorch keeps b_ih and b_hh): g·h·(i + h + 2). Each
    encoder layer has two directions of d/2 units over inputs of size d; each decoder layer d units over d."""
    d, L = c.d_model, c.dec_layers
    g, cell = (3, "GRU") if c.rnn_cell == "gru" else (4, "LSTM")
    h = d // 2

    def names(module: str, layer: int, reverse: bool) -> tuple[str, ...]:
        tail = "_reverse" if reverse else ""
        return tuple(f"{module}.{w}_l{layer}{tail}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    parts = []
    for i in range(c.enc_layers):
        parts.append(
            Part(
                f"encoder {i}: bidirectional {cell}",
                f"2 · {g}·(d/2)·(d + d/2 + 2)",
                2 * g * h * (d + h + 2),
                names("encoder", i, False) + names("encoder", i, True),
            )
        )
    parts.append(Part("bridge: initial decoder state", "dec_layers·(d² + d)", L * (d * d + d), ("bridge.",)))
    for i in range(L):
        dec = names("decoder", i, False)
        parts.append(Part(f"decoder {i}: {cell}", f"{g}·d·(d + d + 2)", g * d * (2 * d + 2), dec))
    parts.append(Part("attention: score matrix W_a", "d²", d * d, ("attn_key.",)))
    parts.append(Part("attention: output layer W_c", "2d² + d", 2 * d * d + d, ("combine.",)))
    return parts
