"""Several models as one (`--model A --model B`): at every step the models' log-probabilities, averaged with
weights, are the ensemble's (log-softmaxed again, so that scores stay log-probabilities).

It meets `Seq2Seq` (mtx/models/base.py), so the search, the KV cache and scoring need no change: the memory is
the models' memories side by side along the last dimension (beam search repeats and reorders it as one tensor),
and the cache holds each model's own cache, reordered with the beams. The models share a tokenizer (the caller
checks), so their sources and outputs are the same ids.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from mtx.config import ModelConfig


class EnsembleCache:
    def __init__(self, caches: list):
        self.caches = caches

    def reorder(self, rows: torch.Tensor, sents: torch.Tensor | None = None) -> None:
        for c in self.caches:
            c.reorder(rows, sents)


class Ensemble(nn.Module):
    def __init__(self, models: list[nn.Module], weights: list[float] | None = None):
        super().__init__()
        self.members = nn.ModuleList(models)
        w = torch.tensor(weights or [1.0] * len(models), dtype=torch.float32)
        self.register_buffer("weights", w / w.sum(), persistent=False)
        self.config: ModelConfig = dataclasses.replace(models[0].config, max_len=min(m.config.max_len for m in models))
        dev = next(models[0].parameters()).device
        with torch.no_grad():  # each memory's width, to cut the joined one apart
            probe = torch.tensor([[4, 3]], device=dev), torch.tensor([[True, True]], device=dev)
            self.widths = [m.encode(*probe).shape[-1] for m in models]

    def _parts(self, memory: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return memory.split(self.widths, dim=-1)

    def _mix(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """The weighted mean of the models' log-probabilities over the last dimension."""
        logp = torch.stack([F.log_softmax(x.float(), dim=-1) for x in logits])
        return (logp * self.weights.view(-1, *[1] * (logp.dim() - 1))).sum(0)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.encode(src, src_mask) for m in self.members], dim=-1)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        parts = self._parts(memory)
        return self._mix([m.decode(tgt_in, x, src_mask) for m, x in zip(self.members, parts, strict=True)])

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self._mix([m(src, src_mask, tgt_in) for m in self.members])

    def init_cache(self, memory: torch.Tensor, src_mask: torch.Tensor, beam: int, max_steps: int,
                   vocab: torch.Tensor | None = None) -> EnsembleCache:  # fmt: skip
        parts = self._parts(memory)
        return EnsembleCache(
            [m.init_cache(x, src_mask, beam, max_steps, vocab) for m, x in zip(self.members, parts, strict=True)]
        )

    def decode_step(self, tokens: torch.Tensor, cache: EnsembleCache, t: int) -> torch.Tensor:
        return self._mix([m.decode_step(tokens, c, t) for m, c in zip(self.members, cache.caches, strict=True)])

    def cross_attention(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("an ensemble has no one attention to draw")
