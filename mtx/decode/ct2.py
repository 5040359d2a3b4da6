"""The CTranslate2 engine (`--engine ct2`): a translator with the same interface and output as mtx's, decoding
with CTranslate2 a model directory `mtx export` wrote (or exports on the fly into MODEL/ct2).

Differences from mtx's search: CTranslate2's beam search ranks hypotheses by log p / length ** alpha (mtx:
((5 + length) / 6) ** alpha) and stops once `PATIENCE` * beam of them have finished; the finished hypotheses it
returns are ranked again by mtx's score (and reported with it), so beam outputs match mtx's but for a few
sentences. The length limit a * source + b is applied per batch (the batch's longest source), not per
sentence; sentences are reported when their batch ends. Greedy outputs are the same (docs/deploy.md).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from mtx.checkpoint import TOKENIZER, WEIGHTS
from mtx.config import DecodeConfig
from mtx.data.shortlist import SHORTLIST
from mtx.data.tokenizer import Tokenizer
from mtx.decode.export import MTX_JSON, engine_module, export_ct2, read_exported
from mtx.decode.search import Done, Drop, Result, length_penalty
from mtx.decode.translator import BatchTranslator
from mtx.errors import MtxError
from mtx.specs import parse_sample

log = logging.getLogger(__name__)


NO_TERMS = "the ct2 engine has no constrained search: glossary terms need the mtx engine (leave out --engine ct2)"
VMAP = "vmap.txt"  # CTranslate2's vocabulary map in an exported directory: the model's shortlist.txt
# decode.precision as CTranslate2's compute_type (on the CPU its int8 is int8 weights with float32 elsewhere)
COMPUTE_TYPES = {"fp32": "float32", "int8": "int8", "bf16": "bfloat16", "fp16": "float16"}


def exported_dir(model_dir: Path) -> Path:
    """`model_dir` itself when it is an exported directory; else MODEL/ct2, exported now if missing or older
    than the model's weights."""
    if (model_dir / MTX_JSON).is_file():
        return model_dir
    out = model_dir / "ct2"
    sources = [p for p in (model_dir / WEIGHTS, model_dir / SHORTLIST) if p.is_file()]
    if not (out / MTX_JSON).is_file() or any(p.stat().st_mtime > (out / MTX_JSON).stat().st_mtime for p in sources):
        log.info(f"exporting {model_dir} to CTranslate2 in {out}")
        export_ct2(model_dir, out, force=True)
    return out


# CTranslate2 ends a sentence's beam search once beam * patience hypotheses have finished; mtx's search goes on
# while a live beam could still win. With patience 2 and the finished hypotheses ranked by mtx's score, its
# outputs equal mtx's on 1,011 of 1,014 val sentences (patience 1: 950; 3: 1,013, slower; docs/deploy.md).
PATIENCE = 2.0


class CT2Translator(BatchTranslator):
    def __init__(self, path: Path, decode: DecodeConfig, device: torch.device, threads: int = 0, workers: int = 1):
        """`threads` per batch (0: torch's setting); `workers`: batches translated at once, from as many
        calling threads (CTranslate2's inter_threads)."""
        _, cfg = read_exported(path)
        super().__init__(Tokenizer.load(path / TOKENIZER), decode, device, cfg.model.max_len)
        self.path, self.threads, self.workers = path, threads or torch.get_num_threads(), workers
        self.engines: dict[str, object] = {}  # one CTranslate2 translator per compute type asked for
        self.engine = self.engine_for(decode.precision)

    def engine_for(self, precision: str):
        """The CTranslate2 translator that computes in `precision` (loaded at its first use)."""
        if precision not in self.engines:
            self.engines[precision] = engine_module().Translator(
                str(self.path), device=self.device.type, intra_threads=self.threads, inter_threads=self.workers,
                compute_type=COMPUTE_TYPES[precision],
            )  # fmt: skip
        return self.engines[precision]

    def _search(self, ids: list[list[int]], c: DecodeConfig, use_cache: bool, on_done: Done | None,
                forced: list[list[int]] | None = None, drop: Drop | None = None,
                terms: list[list[list[int]]] | None = None) -> list[Result]:  # fmt: skip
        """CTranslate2's beam search (or sampling) over the pieces of `ids`, from the pieces of `forced`; its
        finished hypotheses ranked by mtx's score. (A batch runs to its end: `drop` is not heard.) CTranslate2
        has no constrained search: `terms` are refused."""
        if terms is not None and any(terms):
            raise MtxError(NO_TERMS)
        sp = self.tokenizer.sp
        longest = max(len(x) for x in ids) + 1
        need = max((len(f) for f in forced or []), default=0)  # a forced prefix always fits
        search = {"beam_size": c.beam, "num_hypotheses": max(c.nbest, c.beam)}  # all finished, ranked below
        if c.sample:
            topk, topp = parse_sample(c.sample)
            engine_module().set_random_seed(c.seed)
            search = {"beam_size": 1, "num_hypotheses": c.nbest, "sampling_topk": topk, "sampling_topp": topp}
            search["sampling_temperature"] = c.temperature
        results = self.engine_for(c.precision).translate_batch(
            [[sp.id_to_piece(i) for i in x] for x in ids],
            [[sp.id_to_piece(i) for i in f] or None for f in forced] if forced else None,
            **search,
            length_penalty=c.alpha,
            max_decoding_length=max(1, need, min(self.max_len, math.ceil(c.max_len_a * longest + c.max_len_b)) - 1),
            min_decoding_length=0,  # an empty translation is allowed, as in mtx
            patience=PATIENCE,
            repetition_penalty=c.repetition_penalty,
            no_repeat_ngram_size=c.no_repeat_ngram,
            use_vmap=c.shortlist,
            return_scores=True,
        )
        out = []
        for r in results:
            # CTranslate2's score is log p / (tokens + 1) ** alpha (EOS counted): mtx's is log p over
            # ((5 + tokens + 1) / 6) ** alpha; rank the finished hypotheses by mtx's
            scores = [s * (len(h) + 1) ** c.alpha / length_penalty(len(h) + 1, c.alpha) for h, s in
                      zip(r.hypotheses, r.scores, strict=True)]  # fmt: skip
            order = sorted(range(len(scores)), key=lambda j: -scores[j])[: c.nbest]
            out.append([([sp.piece_to_id(p) for p in r.hypotheses[j]], scores[j]) for j in order])
        return out

    def align(self, ids: list[list[int]], targets: list[list[int]], prefix: list[int] | None = None) -> list:
        """CTranslate2's attention for each (source, translation): the translation forced as the target prefix,
        `return_attention` (the last layer's heads averaged, as exported): (target pieces, source pieces) without
        the tag and EOS columns."""
        sp, prefix = self.tokenizer.sp, prefix or []
        out: list = [None] * len(ids)
        todo = [i for i in range(len(ids)) if ids[i] and targets[i]]
        if not todo:
            return out
        results = self.engine.translate_batch(
            [[sp.id_to_piece(x) for x in prefix + ids[i]] for i in todo],
            [[sp.id_to_piece(x) for x in targets[i]] for i in todo],
            beam_size=1,
            max_decoding_length=max(len(targets[i]) for i in todo) + 1,
            return_attention=True,
        )
        for i, r in zip(todo, results, strict=True):
            w = torch.tensor(r.attention[0], dtype=torch.float32)  # (T, S)
            out[i] = w[: len(targets[i]), len(prefix) : len(prefix) + len(ids[i])]
        return out
