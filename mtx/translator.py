"""Translate many sentences: encode, sort by length into token-budget batches, search, restore the order.

Input is processed in chunks, so a file of millions of lines streams through with bounded memory.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from mtx.batching import collate, sorted_batches
from mtx.config import DecodeConfig
from mtx.errors import MtxError
from mtx.model import Transformer
from mtx.search import search
from mtx.tokenizer import Tokenizer


@dataclass
class Translation:
    text: str
    nbest: list[tuple[str, float]]  # (text, score), best first


class Translator:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        decode: DecodeConfig,
        device: torch.device,
        prefix: list[int] | None = None,
    ):
        """`prefix`: ids put before every source sentence (the target-language tag of a multi-target model)."""
        self.model, self.tokenizer, self.cfg, self.device = model.eval(), tokenizer, decode, device
        self.prefix = prefix or []
        self.oom_retries = 0
        self.on_progress: Callable[[int], None] | None = None  # called with the number of sentences done
        # called with (input index, translation) as each sentence's search ends, before the batch's
        self.on_sentence: Callable[[int, Translation], None] | None = None
        # On a GPU a decoding step costs about the same for 50 or 1000 sentences: batch widely.
        self.batch_tokens = decode.batch_tokens or (100_000 if device.type == "cuda" else 12_000)

    def _precision(self):
        """Autocast for decoding when `decode.precision` is bf16 or fp16 (`Config.validate` checks the name)."""
        p = self.cfg.precision
        if p == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)

    def translate(self, lines: list[str], use_cache: bool = True) -> list[Translation]:
        return list(self.stream(lines, use_cache=use_cache))

    def stream(self, lines: Iterable[str], chunk: int = 20000, use_cache: bool = True) -> Iterator[Translation]:
        buf: list[str] = []
        done = 0
        for line in lines:
            buf.append(line)
            if len(buf) >= chunk:
                yield from self._chunk(buf, use_cache, done)
                done += len(buf)
                buf = []
        if buf:
            yield from self._chunk(buf, use_cache, done)

    def _chunk(self, lines: list[str], use_cache: bool, offset: int = 0) -> list[Translation]:
        c = self.cfg
        limit = self.model.config.max_len - 1 - len(self.prefix)  # room for EOS (and the tag)
        ids = self.tokenizer.encode([s.strip() for s in lines])
        for i, x in enumerate(ids):
            if len(x) > limit:
                print(
                    f"warning: input line {offset + i + 1} has {len(x)} pieces; truncated to {limit}", file=sys.stderr
                )
                ids[i] = x[:limit]
        ids = [self.prefix + x if x else x for x in ids]
        empty = Translation("", [("", 0.0)] * c.nbest)  # an empty line: nbest empty candidates
        out: list[Translation | None] = [None if x else empty for x in ids]
        for i, tr in enumerate(out):
            if tr is not None and self.on_sentence is not None:
                self.on_sentence(offset + i, tr)
        todo = [i for i, x in enumerate(ids) if x]

        def finish(idx: list[int], results: list) -> None:
            """Sentences `idx` (of `lines`) are translated: keep them and tell on_sentence."""
            texts = self.tokenizer.decode([toks for res in results for toks, _ in res])
            k = 0
            for i, res in zip(idx, results, strict=True):
                nbest = [(texts[k + j], s) for j, (_, s) in enumerate(res)]
                k += len(res)
                nbest += [("", float("-inf"))] * (c.nbest - len(nbest))  # always nbest columns
                out[i] = Translation(nbest[0][0], nbest)
                if self.on_sentence is not None:
                    self.on_sentence(offset + i, out[i])

        # Beam search holds K rows per sentence: budget the batch in rows * length.
        lengths = [len(ids[i]) + 1 for i in todo]
        for group in sorted_batches(lengths, max(self.batch_tokens // max(c.beam, 1), 1)):
            idx = [todo[j] for j in group]

            def done(rows: list[int], results: list, idx=idx) -> None:
                finish([idx[r] for r in rows], results)

            results = self._search([ids[i] for i in idx], use_cache, done if self.on_sentence else None)
            left = [j for j, i in enumerate(idx) if out[i] is None]  # all of them without on_sentence
            if left:
                finish([idx[j] for j in left], [results[j] for j in left])
            if self.on_progress is not None:
                self.on_progress(len(idx))
        if self.on_progress is not None:
            self.on_progress(len(lines) - len(todo))  # empty lines
        return out  # type: ignore[return-value]: every sentence is translated by now

    def _search(self, ids: list[list[int]], use_cache: bool, on_done=None) -> list:
        """Search one batch, telling `on_done` of sentences as they end; out of GPU memory, retry it as two halves
        (and tell the user once)."""
        c = self.cfg
        try:
            batch = collate(ids).to(self.device)
            with self._precision():
                return search(
                    self.model,
                    batch.src,
                    batch.src_mask,
                    c.beam,
                    c.alpha,
                    c.max_len_a,
                    c.max_len_b,
                    c.nbest,
                    use_cache,
                    c.stop,
                    on_done,
                )
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(ids) == 1:
                raise MtxError(f"out of memory translating one sentence of {len(ids[0])} pieces") from None
            if not self.oom_retries:
                print(f"warning: out of memory with {len(ids)} sentences a batch; retrying smaller", file=sys.stderr)
            self.oom_retries += 1
            half = len(ids) // 2

            def later(rows: list[int], results: list) -> None:  # the second half's rows, in the batch's numbers
                on_done([half + r for r in rows], results)

            return self._search(ids[:half], use_cache, on_done) + self._search(
                ids[half:], use_cache, later if on_done else None
            )
