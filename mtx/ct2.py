"""The CTranslate2 engine (`--engine ct2`): a `Translator` with the same interface and output, decoding with
CTranslate2 a model directory `mtx export` wrote (or exports on the fly into MODEL/ct2).

Differences from mtx's search: CTranslate2's beam search ranks hypotheses by log p / length ** alpha (mtx:
((5 + length) / 6) ** alpha) and stops once `PATIENCE` * beam of them have finished; the finished hypotheses it
returns are ranked again by mtx's score (and reported with it), so beam outputs match mtx's but for a few
sentences. The length limit a * source + b is applied per batch (the batch's longest source), not per
sentence. Greedy outputs are the same (docs/deploy.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch

from mtx.batching import sorted_batches
from mtx.checkpoint import TOKENIZER
from mtx.config import DecodeConfig
from mtx.export import MTX_JSON, _ct2, export_ct2
from mtx.search import length_penalty
from mtx.tokenizer import Tokenizer
from mtx.translator import Translation, Translator


def exported_dir(model_dir: Path, log: Callable[[str], None]) -> Path:
    """`model_dir` itself when it is an exported directory; else MODEL/ct2, exported now if missing or older
    than the model's weights."""
    if (model_dir / MTX_JSON).is_file():
        return model_dir
    out = model_dir / "ct2"
    weights = model_dir / "model.safetensors"
    if not (out / MTX_JSON).is_file() or (
        weights.is_file() and weights.stat().st_mtime > (out / MTX_JSON).stat().st_mtime
    ):
        log(f"exporting {model_dir} to CTranslate2 in {out}")
        export_ct2(model_dir, out, force=True)
    return out


# CTranslate2 ends a sentence's beam search once beam * patience hypotheses have finished; mtx's search goes on
# while a live beam could still win. With patience 2 and the finished hypotheses ranked by mtx's score, its
# outputs equal mtx's on 1,011 of 1,014 val sentences (patience 1: 950; 3: 1,013, slower; docs/deploy.md).
PATIENCE = 2.0


class CT2Translator(Translator):
    def __init__(self, path: Path, decode: DecodeConfig, device: torch.device, threads: int = 0, workers: int = 1):
        """`threads` per batch (0: torch's setting); `workers`: batches translated at once, from as many
        calling threads (CTranslate2's inter_threads)."""
        # Translator's state without its model: the engine is CTranslate2's
        self.info = json.loads((path / MTX_JSON).read_text(encoding="utf-8"))
        self.tokenizer = Tokenizer.load(path / TOKENIZER)
        self.cfg, self.device = decode, device
        self.max_len = self.info["config"]["model"]["max_len"]
        threads = threads or torch.get_num_threads()
        self.engine = _ct2().Translator(str(path), device=device.type, intra_threads=threads, inter_threads=workers)
        self.prefix: list[int] = []  # as Translator's: the target-language tag's id, if any
        self.on_progress: Callable[[int], None] | None = None
        self.on_sentence: Callable[[int, Translation], None] | None = None  # after each batch, not each sentence
        self.batch_tokens = decode.batch_tokens or (100_000 if device.type == "cuda" else 12_000)

    def _chunk(self, lines: list[str], use_cache: bool = True, offset: int = 0) -> list[Translation]:
        """Translator's `_chunk` with CTranslate2 decoding (`translate` and `stream` are Translator's)."""
        c, sp = self.cfg, self.tokenizer.sp
        limit = self.max_len - 1 - len(self.prefix)
        tag = [sp.id_to_piece(i) for i in self.prefix]
        pieces = [p[:limit] for p in sp.encode([s.strip() for s in lines], out_type=str)]
        out = [Translation("", [("", 0.0)] * c.nbest) for _ in lines]
        todo = [i for i, p in enumerate(pieces) if p]
        if self.on_sentence is not None:
            for i in set(range(len(lines))).difference(todo):  # empty lines
                self.on_sentence(offset + i, out[i])
        lengths = [len(pieces[i]) + 1 + len(tag) for i in todo]
        for group in sorted_batches(lengths, max(self.batch_tokens // max(c.beam, 1), 1)):
            idx = [todo[j] for j in group]
            longest = max(lengths[j] for j in group)
            results = self.engine.translate_batch(
                [tag + pieces[i] for i in idx],
                beam_size=c.beam,
                num_hypotheses=max(c.nbest, c.beam),  # all the beam's finished hypotheses, ranked again below
                length_penalty=c.alpha,
                max_decoding_length=max(1, min(self.max_len, math.ceil(c.max_len_a * longest + c.max_len_b)) - 1),
                min_decoding_length=0,  # an empty translation is allowed, as in mtx
                patience=PATIENCE,
                return_scores=True,
            )
            for i, r in zip(idx, results, strict=True):
                # CTranslate2's score is log p / (tokens + 1) ** alpha (EOS counted): mtx's is log p over
                # ((5 + tokens + 1) / 6) ** alpha; rank the finished hypotheses by mtx's
                scores = [s * (len(h) + 1) ** c.alpha / length_penalty(len(h) + 1, c.alpha) for h, s in
                          zip(r.hypotheses, r.scores, strict=True)]  # fmt: skip
                order = sorted(range(len(scores)), key=lambda j: -scores[j])[: c.nbest]
                texts = sp.decode([r.hypotheses[j] for j in order])
                nbest = list(zip(texts, [scores[j] for j in order], strict=True))
                nbest += [("", float("-inf"))] * (c.nbest - len(nbest))
                out[i] = Translation(nbest[0][0], nbest)
                if self.on_sentence is not None:
                    self.on_sentence(offset + i, out[i])
            if self.on_progress is not None:
                self.on_progress(len(idx))
        if self.on_progress is not None:
            self.on_progress(len(lines) - len(todo))
        return out
