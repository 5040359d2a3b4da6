"""Encoder-decoder Transformer, written from its parts. Pure: no I/O, no tokenizer, no loss, no device logic.

Mask convention everywhere: bool `(B, S)`, True = real token; it becomes SDPA's `attn_mask` as `(B, 1, 1, S)`.
Seams: `encode(src, src_mask) -> memory`, `decode(tgt_in, memory, src_mask) -> logits`,
and for search `init_cache(memory, src_mask, beam, max_steps)` + `decode_step(tokens, cache, t)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtx.config import ModelConfig


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


class EncoderLayer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.attn = SelfAttention(c.d_model, c.n_heads, c.attn_dropout)
        self.ff = FeedForward(c.d_model, c.d_ff, c.act_dropout)
        self.res_attn = Residual(c.d_model, c.dropout, c.pre_norm)
        self.res_ff = Residual(c.d_model, c.dropout, c.pre_norm)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.res_attn(x, lambda h: self.attn(h, mask))
        return self.res_ff(x, self.ff)


class DecoderLayer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.self_attn = SelfAttention(c.d_model, c.n_heads, c.attn_dropout)
        self.cross_attn = CrossAttention(c.d_model, c.n_heads, c.attn_dropout)
        self.ff = FeedForward(c.d_model, c.d_ff, c.act_dropout)
        self.res_self = Residual(c.d_model, c.dropout, c.pre_norm)
        self.res_cross = Residual(c.d_model, c.dropout, c.pre_norm)
        self.res_ff = Residual(c.d_model, c.dropout, c.pre_norm)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Causal self-attention needs no padding mask: pads sit after every real target token.
        x = self.res_self(x, lambda h: self.self_attn(h, causal=True))
        x = self.res_cross(x, lambda h: self.cross_attn(h, memory, mask))
        return self.res_ff(x, self.ff)

    def step(self, x: torch.Tensor, cache: DecoderCache, i: int, t: int) -> torch.Tensor:
        x = self.res_self(x, lambda h: self.self_attn.step(h, cache, i, t))
        x = self.res_cross(x, lambda h: self.cross_attn.step(h, cache.cross_k[i], cache.cross_v[i], cache.bias))
        return self.res_ff(x, self.ff)


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

        def gather(buf: torch.Tensor) -> torch.Tensor:
            out = buf.new_empty(rows.shape[0], *buf.shape[1:])
            out[:, :, :n] = buf[:, :, :n].index_select(0, rows)
            return out

        self.self_k = [gather(k) for k in self.self_k]
        self.self_v = [gather(v) for v in self.self_v]
        self.cross_k = [k.index_select(0, sents) for k in self.cross_k]
        self.cross_v = [v.index_select(0, sents) for v in self.cross_v]
        self.bias = self.bias.index_select(0, sents)


class Transformer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.config = c
        self.scale = math.sqrt(c.d_model)
        self.tgt_embed = nn.Embedding(c.vocab_size, c.d_model)
        self.src_embed = self.tgt_embed if c.tie_embeddings else nn.Embedding(c.vocab_size, c.d_model)
        self.register_buffer("pos", sinusoids(c.max_len, c.d_model), persistent=False)
        self.drop = Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.dec_layers))
        self.enc_norm = nn.LayerNorm(c.d_model) if c.pre_norm else nn.Identity()
        self.dec_norm = nn.LayerNorm(c.d_model) if c.pre_norm else nn.Identity()
        self.out_bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.out_proj = None if c.tie_embeddings else nn.Linear(c.d_model, c.vocab_size, bias=False)
        self._init()

    def _init(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                nn.init.xavier_uniform_(p)
            elif name.endswith(".bias") or name == "out_bias":
                nn.init.zeros_(p)
        for emb in {self.src_embed, self.tgt_embed}:
            nn.init.normal_(emb.weight, std=self.config.d_model**-0.5)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        w = self.tgt_embed.weight if self.out_proj is None else self.out_proj.weight
        return F.linear(h, w, self.out_bias)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """src (B, S) ids, src_mask (B, S) bool -> memory (B, S, D)."""
        S = src.shape[1]
        x = self.drop(self.src_embed(src) * self.scale + self.pos[:S])
        mask = src_mask[:, None, None, :]  # (B, 1, 1, S)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.enc_norm(x)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """tgt_in (B, T) ids -> logits (B, T, V); position t sees tgt_in[:, : t + 1] only."""
        T = tgt_in.shape[1]
        x = self.drop(self.tgt_embed(tgt_in) * self.scale + self.pos[:T])
        mask = src_mask[:, None, None, :]
        for layer in self.decoder:
            x = layer(x, memory, mask)
        return self.logits(self.dec_norm(x))

    def forward(self, src, src_mask, tgt_in) -> torch.Tensor:
        return self.decode(tgt_in, self.encode(src, src_mask), src_mask)

    def init_cache(self, memory: torch.Tensor, src_mask: torch.Tensor, beam: int, max_steps: int) -> DecoderCache:
        """Cache for decoding `beam` rows per source sentence for up to `max_steps` positions."""
        kv = [layer.cross_attn.memory_kv(memory) for layer in self.decoder]
        return DecoderCache([k for k, _ in kv], [v for _, v in kv], src_mask[:, None, None, :], max_steps)

    def decode_step(self, tokens: torch.Tensor, cache: DecoderCache, t: int) -> torch.Tensor:
        """tokens (N,) at position t -> logits (N, V), using and filling `cache`."""
        x = self.tgt_embed(tokens)[:, None] * self.scale + self.pos[t]  # (N, 1, D)
        for i, layer in enumerate(self.decoder):
            x = layer.step(x, cache, i, t)
        return self.logits(self.dec_norm(x))[:, 0]


def build_model(c: ModelConfig) -> nn.Module:
    """The model `c.arch` names: this Transformer, or the RNN baseline (mtx/rnn.py); both have the seams above."""
    if c.arch == "rnn":
        from mtx.rnn import RNNSeq2Seq

        return RNNSeq2Seq(c)
    return Transformer(c)
