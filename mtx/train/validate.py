"""Validation during training: the loss on each pair's validation split, and the BLEU of greedy translations."""

from __future__ import annotations

import dataclasses

import torch

from mtx.config import Config
from mtx.data.batching import collate, sorted_batches
from mtx.data.prepare import Data, ValidSet
from mtx.data.tokenizer import Tokenizer
from mtx.decode.metrics import bleu
from mtx.decode.translator import Translator
from mtx.device import autocast
from mtx.models.base import Seq2Seq
from mtx.train.step import loss_fn


@torch.no_grad()
def validate(model: Seq2Seq, data: Data, cfg: Config, device: torch.device) -> dict[str, float]:
    """Validation loss (no label smoothing) on all of each pair's valid split; BLEU of greedy translations (by
    `Translator`, as `mtx translate --beam 1` would) of its first `eval_bleu_sents` (-1: all). Several pairs:
    `valid_loss` and `valid_bleu` are their means, and each pair's are logged as `valid_bleu.de-en` etc."""
    model.eval()
    per_pair = [_validate_pair(model, data.tokenizer, v, cfg, device) for v in data.valid]
    out = {k: sum(r[k] for r in per_pair) / len(per_pair) for k in per_pair[0]}
    if len(per_pair) > 1:
        for v, r in zip(data.valid, per_pair, strict=True):
            out |= {f"{k}.{v.name}": x for k, x in r.items()}
    model.train()
    return out


def _validate_pair(model: Seq2Seq, tok: Tokenizer, v: ValidSet, cfg: Config, device: torch.device) -> dict:
    lengths = [max(len(a), len(b)) + 1 for a, b in zip(v.src, v.tgt, strict=True)]
    total, n = torch.zeros((), device=device), 0
    for idx in sorted_batches(lengths, cfg.train.batch_tokens * 2):
        b = collate([v.src[i] for i in idx], [v.tgt[i] for i in idx]).to(device)
        with autocast(device, cfg.train.amp):
            logits = model(b.src, b.src_mask, b.tgt_in)
        total += loss_fn(logits, b.tgt_out, 0.0)
        n += b.n_tgt_tokens
    out = {"valid_loss": float(total) / n}
    k = len(v.split.src) if cfg.train.eval_bleu_sents < 0 else min(cfg.train.eval_bleu_sents, len(v.split.src))
    if k:
        greedy = Translator(model, tok, dataclasses.replace(cfg.decode, beam=1, nbest=1, sample=""), device)
        hyps = [t.text for t in greedy.translate(v.split.src[:k], prefix=v.prefix)]
        out["valid_bleu"] = bleu(hyps, v.split.tgt[:k])
    return out
