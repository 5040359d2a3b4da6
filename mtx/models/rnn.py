"""An RNN encoder-decoder with attention, the baseline the Transformer is compared with (`model.arch=rnn`).

Encoder: a bidirectional GRU or LSTM (d_model / 2 units each way, `enc_layers` deep) over the source, packed so
that the backward direction starts at each sentence's last real token. Decoder: a GRU or LSTM (`dec_layers`,
d_model units) whose initial state is tanh(W_b · mean of the encoder states); its output h_t attends over the
encoder states with Luong's "general" score h_t · W_a m_s (scaled by 1/sqrt(d)), and the attentional state
tanh(W_c [context; h_t]) predicts the next token (Luong et al., 2015, without input feeding, so that training
runs the decoder RNN over the whole target at once). Pure and behind the seams every model has (mtx/models/base.py),
with the same bool `(B, S)` mask, True = real token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mtx.config import ModelConfig
from mtx.models.layers import Dropout, Output, OutputLayer


class RNNCache:
    """The decoder's recurrent state for N = B * K rows (K beams per sentence, contiguous), `(layers, N, d)`
    (h, and c for an LSTM), plus the attention keys and values `(B, S, d)` and mask, shared by the beams."""

    def __init__(self, state: tuple[torch.Tensor, ...], keys: torch.Tensor, memory: torch.Tensor, mask):
        self.state, self.keys, self.memory, self.mask = state, keys, memory, mask
        self.output: OutputLayer | None = None  # the batch's shortlisted output layer, if any

    def reorder(self, rows: torch.Tensor, sents: torch.Tensor | None = None) -> None:
        self.state = tuple(s.index_select(1, rows) for s in self.state)
        if sents is not None:
            self.keys = self.keys.index_select(0, sents)
            self.memory = self.memory.index_select(0, sents)
            self.mask = self.mask.index_select(0, sents)


class RNNSeq2Seq(Output, nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.config = c
        d = c.d_model
        rnn = nn.GRU if c.rnn_cell == "gru" else nn.LSTM
        self.scale = math.sqrt(d)
        self.tgt_embed = nn.Embedding(c.vocab_size, d)
        self.src_embed = self.tgt_embed if c.tie_embeddings else nn.Embedding(c.vocab_size, d)
        self.drop = Dropout(c.dropout)
        between = c.dropout if c.enc_layers > 1 else 0.0  # nn.GRU's dropout acts between layers only
        self.encoder = rnn(d, d // 2, c.enc_layers, batch_first=True, bidirectional=True, dropout=between)
        self.bridge = nn.Linear(d, c.dec_layers * d)
        between = c.dropout if c.dec_layers > 1 else 0.0
        self.decoder = rnn(d, d, c.dec_layers, batch_first=True, dropout=between)
        self.attn_key = nn.Linear(d, d, bias=False)  # W_a
        self.combine = nn.Linear(2 * d, d)  # W_c
        self.out_bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.out_proj = None if c.tie_embeddings else nn.Linear(d, c.vocab_size, bias=False)
        for emb in {self.src_embed, self.tgt_embed}:
            nn.init.normal_(emb.weight, std=d**-0.5)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """src (B, S) ids, src_mask (B, S) bool -> memory (B, S, d), zeros at padding."""
        S = src.shape[1]
        x = self.drop(self.src_embed(src) * self.scale)
        lengths = src_mask.sum(1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True, total_length=S)
        return out

    def initial_state(self, memory: torch.Tensor, src_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The decoder's first state, (layers, B, d) each: h = tanh(W_b · mean of the real encoder states)."""
        m = src_mask[:, :, None].to(memory.dtype)
        mean = (memory * m).sum(1) / m.sum(1)
        B, L = memory.shape[0], self.config.dec_layers
        h = torch.tanh(self.bridge(mean)).view(B, L, -1).transpose(0, 1).contiguous()
        return (h,) if self.config.rnn_cell == "gru" else (h, torch.zeros_like(h))

    def _run(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]):
        out, new = self.decoder(x, state[0] if len(state) == 1 else state)
        return out, (new,) if isinstance(new, torch.Tensor) else tuple(new)

    def attend(self, h: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """h (B, T, d) decoder outputs (or T beams of one position) -> attentional states (B, T, d)."""
        ctx = F.scaled_dot_product_attention(h[:, None], keys[:, None], memory[:, None], attn_mask=mask)[:, 0]
        return torch.tanh(self.combine(torch.cat([ctx, h], dim=-1)))

    def cross_attention(self, src, src_mask, tgt_in) -> torch.Tensor:
        """The attention of the decoder input `tgt_in`, as (layers = 1, B, heads = 1, T, S)."""
        memory = self.encode(src, src_mask)
        h, _ = self._run(self.tgt_embed(tgt_in) * self.scale, self.initial_state(memory, src_mask))
        scores = h @ self.attn_key(memory).transpose(1, 2) / math.sqrt(h.shape[-1])
        return scores.float().masked_fill(~src_mask[:, None, :], float("-inf")).softmax(-1)[None, :, None]

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """tgt_in (B, T) ids -> logits (B, T, V); position t sees tgt_in[:, : t + 1] only (the RNN runs forward)."""
        x = self.drop(self.tgt_embed(tgt_in) * self.scale)
        h, _ = self._run(x, self.initial_state(memory, src_mask))
        out = self.attend(h, self.attn_key(memory), memory, src_mask[:, None, None, :])
        return self.logits(self.drop(out))

    def forward(self, src, src_mask, tgt_in) -> torch.Tensor:
        return self.decode(tgt_in, self.encode(src, src_mask), src_mask)

    def init_cache(self, memory: torch.Tensor, src_mask: torch.Tensor, beam: int, max_steps: int,
                   vocab: torch.Tensor | None = None) -> RNNCache:  # fmt: skip
        state = tuple(s.repeat_interleave(beam, dim=1) for s in self.initial_state(memory, src_mask))
        cache = RNNCache(state, self.attn_key(memory), memory, src_mask[:, None, None, :])
        if vocab is not None:
            cache.output = self.output_layer(vocab)
        return cache

    def decode_step(self, tokens: torch.Tensor, cache: RNNCache, t: int) -> torch.Tensor:
        """tokens (N,) -> logits (N, V), advancing the cached state one position."""
        h, cache.state = self._run(self.tgt_embed(tokens)[:, None] * self.scale, cache.state)  # (N, 1, d)
        B = cache.keys.shape[0]
        N, _, d = h.shape
        out = self.attend(h.view(B, N // B, d), cache.keys, cache.memory, cache.mask)  # beams as query positions
        return (cache.output or self.logits)(out.reshape(N, d))
