"""What search, training and export need from a model, and the one place a config becomes a model.

Every architecture meets `Seq2Seq`, so code above the models never asks which one it holds: the Transformer
(mtx/models/transformer.py) and the RNN baseline (mtx/models/rnn.py). Masks are bool `(B, S)`, True = real token.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from mtx.config import ModelConfig
from mtx.models.rnn import RNNSeq2Seq
from mtx.models.transformer import Transformer


class Cache(Protocol):
    """A decoder's incremental state for N = B * K rows (K beams per sentence, contiguous)."""

    def reorder(self, rows: torch.Tensor, sents: torch.Tensor | None = None) -> None:
        """Row i takes the state of row `rows[i]`; `sents` keeps only those sentences (`rows` then has fewer)."""


class Seq2Seq(Protocol):
    config: ModelConfig

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """src (B, S) ids, src_mask (B, S) -> memory (B, S, D)."""

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """tgt_in (B, T) ids -> logits (B, T, V); position t sees tgt_in[:, : t + 1] only."""

    def init_cache(self, memory: torch.Tensor, src_mask: torch.Tensor, beam: int, max_steps: int,
                   vocab: torch.Tensor | None = None) -> Cache:  # fmt: skip
        """The state for decoding `beam` rows per sentence for up to `max_steps` positions; `vocab` (sorted
        target ids, a shortlist): the steps' logits are those ids' only, (N, len(vocab))."""

    def decode_step(self, tokens: torch.Tensor, cache: Cache, t: int) -> torch.Tensor:
        """tokens (N,) at position t -> logits (N, V), using and advancing `cache`."""

    def cross_attention(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Attention weights (layers, B, heads, T, S) over the source for the decoder input `tgt_in`."""

    def __call__(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Training's forward: logits (B, T, V)."""


def build_model(c: ModelConfig) -> nn.Module:
    """The model `c.arch` names, freshly initialised: the Transformer, or the RNN baseline."""
    return RNNSeq2Seq(c) if c.arch == "rnn" else Transformer(c)
