"""A model seen through a vocabulary shortlist (mtx/data/shortlist.py): target token j is the model's token
`vocab[j]`, and every distribution is over `vocab` only (renormalised there, as Marian and CTranslate2 do).

It meets `Seq2Seq` (mtx/models/base.py), so search runs unchanged on (N, len(vocab)) logits: a batch's
log-softmax, top-k and repetition rules cost its shortlist's size, not the vocabulary's. `vocab` is sorted and
holds PAD, UNK, BOS and EOS, whose ids (0-3) are the first four: they keep their ids through the view. The caller
maps target ids in (a forced prefix, terms) with `local` and out with `vocab`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn


class Shortlisted(nn.Module):
    def __init__(self, model: nn.Module, vocab: torch.Tensor):
        super().__init__()
        if vocab.numel() < 4 or vocab[:4].tolist() != [0, 1, 2, 3] or bool((vocab.diff() <= 0).any()):
            raise ValueError("a shortlist's vocab is sorted, unique, and starts with the special ids 0-3")
        self.model, self.vocab = model, vocab
        self.config = dataclasses.replace(model.config, vocab_size=vocab.numel())
        self.column = torch.full((model.config.vocab_size,), -1, dtype=torch.long, device=vocab.device)
        self.column[vocab] = torch.arange(vocab.numel(), device=vocab.device)

    def local(self, ids: torch.Tensor) -> torch.Tensor:
        """The view's ids of the model's `ids` (each in `vocab`; -1 for any that is not)."""
        return self.column[ids]

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode(src, src_mask)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        return self.model.decode(self.vocab[tgt_in], memory, src_mask).index_select(-1, self.vocab)

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(tgt_in, self.encode(src, src_mask), src_mask)

    def init_cache(self, memory: torch.Tensor, src_mask: torch.Tensor, beam: int, max_steps: int):
        return self.model.init_cache(memory, src_mask, beam, max_steps, self.vocab)

    def decode_step(self, tokens: torch.Tensor, cache, t: int) -> torch.Tensor:
        return self.model.decode_step(self.vocab[tokens], cache, t)

    def cross_attention(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.model.cross_attention(src, src_mask, self.vocab[tgt_in])
