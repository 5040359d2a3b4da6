"""Encoder-decoder Transformer, written from its parts (mtx/models/layers.py). Pure: no I/O, no tokenizer, no
loss, no device logic.

Seams (mtx/models/base.py): `encode(src, src_mask) -> memory`, `decode(tgt_in, memory, src_mask) -> logits`,
for search `init_cache(memory, src_mask, beam, max_steps)` + `decode_step(tokens, cache, t)`, and
`cross_attention(src, src_mask, tgt_in)` for pictures.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mtx.config import ModelConfig
from mtx.models.layers import (
    CrossAttention,
    DecoderCache,
    Dropout,
    FeedForward,
    Output,
    Residual,
    SelfAttention,
    sinusoids,
    split_heads,
)


class EncoderLayer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        norm = (c.d_model, c.dropout, c.pre_norm)  # each sublayer's residual connection
        self.attn = SelfAttention(c.d_model, c.n_heads, c.attn_dropout)
        self.ff = FeedForward(c.d_model, c.d_ff, c.act_dropout)
        self.res_attn, self.res_ff = Residual(*norm), Residual(*norm)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.res_attn(x, lambda h: self.attn(h, mask))
        return self.res_ff(x, self.ff)


class DecoderLayer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.self_attn = SelfAttention(c.d_model, c.n_heads, c.attn_dropout)
        self.cross_attn = CrossAttention(c.d_model, c.n_heads, c.attn_dropout)
        self.ff = FeedForward(c.d_model, c.d_ff, c.act_dropout)
        norm = (c.d_model, c.dropout, c.pre_norm)
        self.res_self, self.res_cross, self.res_ff = Residual(*norm), Residual(*norm), Residual(*norm)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Causal self-attention needs no padding mask: pads sit after every real target token.
        x = self.res_self(x, lambda h: self.self_attn(h, causal=True))
        x = self.res_cross(x, lambda h: self.cross_attn(h, memory, mask))
        return self.res_ff(x, self.ff)

    def step(self, x: torch.Tensor, cache: DecoderCache, i: int, t: int) -> torch.Tensor:
        x = self.res_self(x, lambda h: self.self_attn.step(h, cache, i, t))
        x = self.res_cross(x, lambda h: self.cross_attn.step(h, cache.cross_k[i], cache.cross_v[i], cache.bias))
        return self.res_ff(x, self.ff)


class Transformer(Output, nn.Module):
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

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """src (B, S) ids, src_mask (B, S) bool -> memory (B, S, D). In eval mode only the real positions go
        through the linear layers (padding is half of a decoding batch's positions on Multi30k, whose batches
        are budgeted by their longest source); the padding's memory is then 0, which every mask hides."""
        B, S = src.shape
        x = self.drop(self.src_embed(src) * self.scale + self.pos[:S])
        mask = src_mask[:, None, None, :]  # (B, 1, 1, S)
        if self.training:
            for layer in self.encoder:
                x = layer(x, mask)
            return self.enc_norm(x)
        real = src_mask.reshape(-1).nonzero()[:, 0]
        x = x.reshape(B * S, -1).index_select(0, real)  # (n, D)
        for layer in self.encoder:
            x = layer.res_attn(x, lambda h, layer=layer: layer.attn.packed(h, real, (B, S), mask))
            x = layer.res_ff(x, layer.ff)
        y = self.enc_norm(x)
        return y.new_zeros(B * S, y.shape[-1]).index_copy_(0, real, y).view(B, S, -1)

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

    def init_cache(self, memory: torch.Tensor, src_mask: torch.Tensor, beam: int, max_steps: int,
                   vocab: torch.Tensor | None = None) -> DecoderCache:  # fmt: skip
        """Cache for decoding `beam` rows per source sentence for up to `max_steps` positions; `vocab` (sorted
        target ids, a shortlist): the steps' logits are those ids' only, (N, len(vocab))."""
        kv = [layer.cross_attn.memory_kv(memory) for layer in self.decoder]
        # contiguous once here: as views of the K/V projection, every step's matmuls would copy them (on the
        # CPU, the largest cost of a greedy step)
        k, v = [k.contiguous() for k, _ in kv], [v.contiguous() for _, v in kv]
        cache = DecoderCache(k, v, src_mask[:, None, None, :], max_steps)
        if vocab is not None:
            cache.output = self.output_layer(vocab)
        return cache

    def decode_step(self, tokens: torch.Tensor, cache: DecoderCache, t: int) -> torch.Tensor:
        """tokens (N,) at position t -> logits (N, V), using and filling `cache`."""
        x = self.tgt_embed(tokens)[:, None] * self.scale + self.pos[t]  # (N, 1, D)
        for i, layer in enumerate(self.decoder):
            x = layer.step(x, cache, i, t)
        return (cache.output or self.logits)(self.dec_norm(x))[:, 0]

    def cross_attention(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Weights (layers, B, heads, T, S) of every decoder layer's cross-attention for the decoder input `tgt_in`,
        recomputed by read-only hooks on the cross-attention modules (decoding never computes them)."""
        weights = []

        def hook(module, args, output):
            h, memory, mask = args  # the (normed) decoder states, the encoder output, the (B, 1, 1, S) mask
            k, _ = module.memory_kv(memory)
            q = split_heads(module.q(h), module.n_heads)
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, T, S)
            weights.append(scores.float().masked_fill(~mask, float("-inf")).softmax(-1))

        handles = [layer.cross_attn.register_forward_hook(hook) for layer in self.decoder]
        try:
            self(src, src_mask, tgt_in)
        finally:
            for handle in handles:
                handle.remove()
        return torch.stack(weights)
