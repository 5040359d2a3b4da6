"""The Transformer's building blocks: positions, attention (with the decoder's K/V cache), feed-forward, residual
norms, dropout. Pure: tensors in, tensors out.

Mask convention everywhere: bool `(B, S)`, True = real token; it becomes SDPA's `attn_mask` as `(B, 1, 1, S)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sinusoidal position table (Vaswani et al., 2017)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * inv)
    table[:, 1::2] = torch.cos(pos * inv)
    return table


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, T, D = x.shape
    return x.view(B, T, n_heads, D // n_heads).transpose(1, 2)  # (B, H, T, Dh)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)  # (B, T, D)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh) + bias) v, as three plain ops: for the few queries of a decoding step this is
    faster on CPU than SDPA's kernel (2.3 against 0.9 ms for 800 rows of one query; docs/deploy.md). `bias`:
    additive, 0 or -inf, broadcast over the scores."""
    if q.device.type != "cpu":  # one kernel where launches, not arithmetic, bound a step (docs/performance.md)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    s = torch.matmul(q, k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5)
    if bias is not None:
        s = s.add_(bias)
    return torch.matmul(s.softmax(dim=-1), v)


class Dropout(nn.Module):
    """Inverted dropout. On CPU it draws 7 random bytes from each random int64, ~3x faster than
    `F.dropout`'s Bernoulli sampling (the rate is rounded to a multiple of 1/256); elsewhere it is `F.dropout`."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.threshold = round(p * 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or torch.compiler.is_compiling():  # compiled: fused into neighbouring kernels
            return F.dropout(x, self.p, True)
        n = x.numel()
        m = (n + 6) // 7
        bits = torch.empty(m, dtype=torch.int64, device=x.device).random_().view(torch.uint8).view(m, 8)[:, :7]
        keep = (bits >= self.threshold).view(-1)[:n].view(x.shape)
        return x * keep * (256.0 / (256 - self.threshold))


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        return self.out(merge_heads(y))

    def packed(self, x: torch.Tensor, real: torch.Tensor, shape: tuple[int, int], mask: torch.Tensor) -> torch.Tensor:
        """Self-attention of the real positions only: x (n, D) are the rows `real` (flat indices) of a (B, S)
        batch; the projections run on those n rows, the attention on the padded (B, S) layout (`mask`)."""
        B, S = shape
        qkv = self.qkv(x)
        full = qkv.new_zeros(B * S, qkv.shape[-1]).index_copy_(0, real, qkv).view(B, S, -1)
        q, k, v = (split_heads(t, self.n_heads) for t in full.chunk(3, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(merge_heads(y).reshape(B * S, -1).index_select(0, real))

    def step(self, x: torch.Tensor, cache: DecoderCache, layer: int, t: int) -> torch.Tensor:
        """One decoding position: x (N, 1, D); its K/V join the layer's cache at position t."""
        q, k, v = (split_heads(z, self.n_heads) for z in self.qkv(x).chunk(3, dim=-1))
        k_all, v_all = cache.append(layer, k, v, t)  # (N, H, t + 1, Dh)
        y = attend(q, k_all, v_all)
        return self.out(merge_heads(y))


class CrossAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(memory).chunk(2, dim=-1)
        return split_heads(k, self.n_heads), split_heads(v, self.n_heads)  # (B, H, S, Dh) each

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        k, v = self.memory_kv(memory)
        q = split_heads(self.q(x), self.n_heads)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(merge_heads(y))

    def step(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (B*K, 1, D) for K beams per sentence; k, v (B, H, S, Dh) shared by the beams, not copied; bias
        (B, 1, 1, S): 0 at real tokens, -inf at padding."""
        B, H = k.shape[0], self.n_heads
        N, _, D = x.shape
        q = self.q(x).view(B, N // B, H, D // H).transpose(1, 2)  # (B, H, K, Dh): beams as query positions
        y = attend(q, k, v, bias)  # (B, H, K, Dh)
        return self.out(y.transpose(1, 2).reshape(N, 1, D))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff)
        self.w2 = nn.Linear(d_ff, d_model)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.drop(F.relu(self.w1(x))))


class Residual(nn.Module):
    """Norm + sublayer + dropout + residual, pre-norm (x + f(norm(x))) or post-norm (norm(x + f(x)))."""

    def __init__(self, d_model: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.drop = Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, f) -> torch.Tensor:
        if self.pre_norm:
            return x + self.drop(f(self.norm(x)))
        return self.norm(x + self.drop(f(x)))


Linear = Callable[[torch.Tensor], torch.Tensor]


class OutputLayer:
    """The output projection as search runs it: over `vocab` only (sorted target ids, a batch's shortlist: logits
    (..., len(vocab)), column j for token vocab[j]), with packed weights (`packed` makes the linear map from the
    weight and bias: mtx/models/packed.py), or both. Built once per batch, so the rows are gathered (and packed)
    once."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, vocab: torch.Tensor | None = None,
                 packed: Callable[[torch.Tensor, torch.Tensor], Linear] | None = None):  # fmt: skip
        if vocab is not None:
            weight, bias = weight.index_select(0, vocab), bias.index_select(0, vocab)
        weight, bias = weight.detach(), bias.detach()
        self.linear: Linear = packed(weight, bias) if packed else lambda h: F.linear(h, weight, bias)

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)


class Output:
    """The output layer of a model with `tgt_embed`, `out_proj` (None: tied to the embeddings) and `out_bias`:
    logits for training and scoring, an `OutputLayer` for a batch's search."""

    tgt_embed: nn.Embedding
    out_proj: nn.Linear | None
    out_bias: nn.Parameter
    packed: Callable[[torch.Tensor, torch.Tensor], Linear] | None = None  # set by mtx/models/packed.py
    _full: OutputLayer | None = None  # the whole vocabulary's packed layer, packed once

    def out_weight(self) -> torch.Tensor:
        return self.tgt_embed.weight if self.out_proj is None else self.out_proj.weight

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return self.output_layer()(h)
        return F.linear(h, self.out_weight(), self.out_bias)

    def output_layer(self, vocab: torch.Tensor | None = None) -> OutputLayer:
        """The output layer over `vocab` (sorted ids; None: all of them)."""
        if vocab is None and self._full is not None:
            return self._full
        layer = OutputLayer(self.out_weight(), self.out_bias, vocab, self.packed)
        if vocab is None and self.packed is not None:
            self._full = layer
        return layer


class DecoderCache:
    """Per-layer K/V for incremental decoding of N = B * K rows (K beams per sentence, contiguous).

    Self-attention K/V are preallocated `(N, H, max_steps, Dh)` at the first step (in the dtype the
    projections produce, so bf16 under autocast) and filled one position a step. Cross-attention K/V
    are computed once per source batch, `(B, H, S, Dh)`, and shared by the beams.
    """

    def __init__(self, cross_k, cross_v, mask, max_steps: int):
        self.cross_k, self.cross_v = cross_k, cross_v
        dtype = cross_k[0].dtype if cross_k else torch.float32
        self.bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
        self.max_steps = max_steps
        self.length = 0  # positions filled
        self.self_k: list[torch.Tensor | None] = [None] * len(cross_k)
        self.self_v: list[torch.Tensor | None] = [None] * len(cross_k)
        self.output: OutputLayer | None = None  # the batch's shortlisted output layer, if any

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write position t's k, v (N, H, 1, Dh); return the layer's K/V for positions 0..t."""
        if self.self_k[layer] is None:
            N, H, _, Dh = k.shape
            self.self_k[layer] = k.new_empty(N, H, self.max_steps, Dh)
            self.self_v[layer] = v.new_empty(N, H, self.max_steps, Dh)
        kc, vc = self.self_k[layer], self.self_v[layer]
        kc[:, :, t : t + 1] = k
        vc[:, :, t : t + 1] = v
        self.length = t + 1
        return kc[:, :, : t + 1], vc[:, :, : t + 1]

    def reorder(self, rows: torch.Tensor, sents: torch.Tensor | None = None) -> None:
        """Row i takes the K/V of row `rows[i]`, over the filled positions only; `sents` keeps those sentences
        (and `rows` then has fewer rows). Without `sents`, only the rows that change are copied, in place."""
        n = self.length
        if sents is None:
            moved = (rows != torch.arange(rows.shape[0], device=rows.device)).nonzero()[:, 0]
            if moved.numel():
                came = rows.index_select(0, moved)
                for buf in (*self.self_k, *self.self_v):
                    buf[:, :, :n].index_copy_(0, moved, buf[:, :, :n].index_select(0, came))
            return

        m = rows.shape[0]

        def gather(buf: torch.Tensor) -> torch.Tensor:  # into the buffer's own first m rows: no new buffer,
            buf[:m, :, :n] = buf[:, :, :n].index_select(0, rows)  # whose first touch cost more than the copy
            return buf[:m]

        def keep(buf: torch.Tensor) -> torch.Tensor:
            buf[: sents.shape[0]] = buf.index_select(0, sents)
            return buf[: sents.shape[0]]

        self.self_k = [gather(k) for k in self.self_k]
        self.self_v = [gather(v) for v in self.self_v]
        self.cross_k = [keep(k) for k in self.cross_k]
        self.cross_v = [keep(v) for v in self.cross_v]
        self.bias = keep(self.bias)
