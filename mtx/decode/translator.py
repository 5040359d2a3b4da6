"""Translate many sentences: encode, sort by length into token-budget batches, search, restore the order.

`BatchTranslator` is what every engine shares; an engine supplies one hook, `_search`, which decodes one batch of
source ids. `Translator` searches with mtx's own beam search (mtx/decode/search.py); `CT2Translator`
(mtx/decode/ct2.py) with CTranslate2. Options that differ between requests are passed with each call (the
target-language tag, a per-sentence callback, decoding settings), as CTranslate2's `translate_batch` takes them,
so that one translator serves every target and every request. Input is processed in chunks, so a file of
millions of lines streams through with bounded memory.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat

import torch

from mtx.config import DecodeConfig
from mtx.data.batching import collate, pad, sorted_batches
from mtx.data.glossary import Glossary
from mtx.data.shortlist import Shortlist
from mtx.data.tokenizer import Tokenizer
from mtx.decode.confidence import Calibration, confidence, mean_logprob
from mtx.decode.constraints import Constraints
from mtx.decode.repetition import Repetition
from mtx.decode.search import Done, Drop, Result, Sampling, search
from mtx.device import autocast
from mtx.errors import MtxError
from mtx.models.base import Seq2Seq
from mtx.models.packed import KINDS, available, pack
from mtx.models.shortlisted import Shortlisted
from mtx.specs import parse_sample

log = logging.getLogger(__name__)


@dataclass
class Translation:
    text: str
    nbest: list[tuple[str, float]]  # (text, score), best first
    tokens: list[int] = field(default_factory=list)  # the best candidate's target ids (without EOS)
    confidence: float = 1.0  # the best candidate's, in [0, 1] (confidence.py); an empty line's is 1


OnSentence = Callable[[int, Translation], None]  # (input index, its translation), as each sentence's search ends
OnProgress = Callable[[int], None]  # sentences done since the last call
Dropped = Callable[[], Collection[int]]  # input indices no longer wanted: their rows leave the search at its next step


def batch_budget(decode: DecodeConfig, device: torch.device) -> int:
    """Rows x source length a decoding batch holds: on a GPU a decoding step costs about the same for 50 or 1000
    sentences, so batch widely."""
    return decode.batch_tokens or (100_000 if device.type == "cuda" else 12_000)


class BatchTranslator:
    """Lines in, translations out, in order; subclasses decode a batch (`_search`)."""

    def __init__(self, tokenizer: Tokenizer, decode: DecodeConfig, device: torch.device, max_len: int):
        self.tokenizer, self.cfg, self.device, self.max_len = tokenizer, decode, device, max_len
        self.batch_tokens = self.budget(decode)
        self.calibration: Calibration | None = None  # the model's (confidence.py), where it has one
        self.shortlist: Shortlist | None = None  # the model's (MODEL/shortlist.txt), where it has one

    def budget(self, decode: DecodeConfig) -> int:
        return batch_budget(decode, self.device)

    def translate(self, lines: Iterable[str], **options) -> list[Translation]:
        """The translations of `lines`, in order (the options of `stream`)."""
        return list(self.stream(lines, **options))

    def stream(
        self,
        lines: Iterable[str],
        *,
        prefix: list[int] | None = None,
        target_prefix: str | Iterable[str] | None = None,
        glossary: Glossary | None = None,
        constraints: Iterable[list[str]] | None = None,
        decode: DecodeConfig | None = None,
        use_cache: bool = True,
        on_sentence: OnSentence | None = None,
        on_progress: OnProgress | None = None,
        chunk: int = 20000,
    ) -> Iterator[Translation]:
        """Translations of `lines`, in order, `chunk` lines at a time. `prefix`: ids put before every source
        sentence (the target-language tag of a multi-target model); `decode`: settings for this call (default: the
        translator's); `target_prefix`: text every translation starts with (one for all lines, or one a line, ""
        for none), the search going on from its pieces; `glossary`: its terms found in a line make their
        translations constraints, which the output holds whole (search.py; the mtx engine only), as do a line's
        `constraints` (target texts, one list a line, or None); `on_sentence(i, translation)` as each sentence's
        search ends, before its batch's; `on_progress(n)` as sentences get done."""
        opts = (prefix or [], decode or self.cfg, use_cache, on_sentence, on_progress)
        terms = repeat([]) if constraints is None else constraints
        starts = (
            repeat(target_prefix or "") if target_prefix is None or isinstance(target_prefix, str) else target_prefix
        )
        buf: list[str] = []
        heads: list[str] = []
        wanted: list[list[str]] = []  # each line's target terms
        done = 0
        for line, head, own in zip(lines, starts, terms, strict=False):  # starts, terms: as many, or endless
            buf.append(line)
            heads.append(head)
            wanted.append([t.target for t in glossary.find(line)] + list(own) if glossary else list(own))
            if len(buf) >= chunk:
                yield from self._chunk(buf, heads, wanted, done, *opts)
                done += len(buf)
                buf, heads, wanted = [], [], []
        if buf:
            yield from self._chunk(buf, heads, wanted, done, *opts)

    def _chunk(
        self,
        lines: list[str],
        heads: list[str],
        wanted: list[list[str]],
        offset: int,
        prefix: list[int],
        c: DecodeConfig,
        use_cache: bool,
        on_sentence: OnSentence | None,
        on_progress: OnProgress | None,
    ) -> list[Translation]:
        ids = self.tokenizer.encode([s.strip() for s in lines])
        forced = self.tokenizer.encode(heads) if any(heads) else None
        terms = self.tokenizer.encode_groups(wanted) if any(wanted) else None
        options = {"use_cache": use_cache, "on_sentence": on_sentence, "on_progress": on_progress, "offset": offset}
        return self.decode_ids(ids, prefix=prefix, forced=forced, terms=terms, decode=c, **options)

    def decode_ids(
        self,
        ids: list[list[int]],
        *,
        prefix: list[int] | None = None,
        forced: list[list[int]] | None = None,
        terms: list[list[list[int]]] | None = None,
        decode: DecodeConfig | None = None,
        use_cache: bool = True,
        on_sentence: OnSentence | None = None,
        on_progress: OnProgress | None = None,
        offset: int = 0,
        dropped: Dropped | None = None,
    ) -> list[Translation]:
        """Translations of sources already encoded (`ids`, without the tag or EOS), in order: the options of
        `stream`, `forced` and `terms` (each line's constraints) as ids; `dropped()`: the inputs no longer wanted
        (a server's clients gone), whose rows leave the search at its next step (their translations are then
        whatever was found so far)."""
        c, prefix = decode or self.cfg, prefix or []
        limit = self.max_len - 1 - len(prefix)  # room for EOS (and the tag)
        ids = list(ids)
        for i, x in enumerate(ids):
            if len(x) > limit:
                log.warning(f"warning: input line {offset + i + 1} has {len(x)} pieces; truncated to {limit}")
                ids[i] = x[:limit]
        ids = [prefix + x if x else x for x in ids]
        if forced is not None:
            forced = [f[: self.max_len - 2] for f in forced]  # room for a token of its own and EOS
        empty = Translation("", [("", 0.0)] * c.nbest)  # an empty line: nbest empty candidates
        out: list[Translation | None] = [None if x else empty for x in ids]
        for i, tr in enumerate(out):
            if tr is not None and on_sentence is not None:
                on_sentence(offset + i, tr)
        todo = [i for i, x in enumerate(ids) if x]

        def finish(idx: list[int], results: list[Result]) -> None:
            """Sentences `idx` (of `lines`) are translated: keep them and tell on_sentence."""
            texts = self.tokenizer.decode([toks for res in results for toks, _ in res])
            k = 0
            for i, res in zip(idx, results, strict=True):
                nbest = [(texts[k + j], s) for j, (_, s) in enumerate(res)]
                k += len(res)
                nbest += [("", float("-inf"))] * (c.nbest - len(nbest))  # always nbest columns
                best = res[0][0] if res else []
                mean = mean_logprob(nbest[0][1], len(best), c.alpha)
                out[i] = Translation(nbest[0][0], nbest, best, confidence(mean, self.calibration))
                if on_sentence is not None:
                    on_sentence(offset + i, out[i])

        # Beam search holds K rows per sentence (sampling, a row per draw): budget the batch in rows * length. With
        # constraints the beam is at least a sentence's constraint tokens + 1: sentences are batched with those of
        # the same beam only, so that a translation never depends on what else is in its batch; a sentence counts
        # as long as its constraint tokens at least (the search's state holds rows x constraint tokens).
        rows = c.nbest if c.sample else c.beam
        need = {i: sum(map(len, terms[i])) if terms else 0 for i in todo}
        width = {i: max(rows, need[i] + 1) if need[i] else 0 for i in todo}
        batches = []
        for k in sorted(set(width.values())):
            part = [i for i in todo if width[i] == k]
            lengths = [max(len(ids[i]) + 1, need[i]) for i in part]
            per = max(self.budget(c) // max(k, rows, 1), 1)
            batches += [[part[j] for j in g] for g in sorted_batches(lengths, per)]
        for idx in batches:

            def done(rows: list[int], results: list[Result], idx=idx) -> None:
                finish([idx[r] for r in rows], results)

            def drop(idx=idx) -> list[int]:  # the batch's rows whose inputs are no longer wanted
                gone = dropped()
                return [r for r, i in enumerate(idx) if i in gone] if gone else []

            # each batch its own random numbers, the same for the same input and seed
            cb = dataclasses.replace(c, seed=c.seed * 1_000_003 + offset + idx[0]) if c.sample else c
            heads_ids = None if forced is None else [forced[i] for i in idx]
            cons = None if terms is None or not any(terms[i] for i in idx) else [terms[i] for i in idx]
            on_done = done if on_sentence else None
            gone = drop if dropped else None
            results = self._search([ids[i] for i in idx], cb, use_cache, on_done, heads_ids, gone, cons)
            left = [j for j, i in enumerate(idx) if out[i] is None]  # all of them without on_sentence
            if left:
                finish([idx[j] for j in left], [results[j] for j in left])
            if on_progress is not None:
                on_progress(len(idx))
        if on_progress is not None:
            on_progress(len(ids) - len(todo))  # empty lines
        return out  # type: ignore[return-value]: every sentence is translated by now

    def align(self, ids: list[list[int]], targets: list[list[int]], prefix: list[int] | None = None) -> list:
        """Each translation's alignment to its source: weights (target pieces, source pieces), rows summing to
        about 1, or None where the engine cannot tell (this one)."""
        return [None] * len(ids)

    def _search(self, ids: list[list[int]], c: DecodeConfig, use_cache: bool, on_done: Done | None,
                forced: list[list[int]] | None = None, drop: Drop | None = None,
                terms: list[list[list[int]]] | None = None) -> list[Result]:  # fmt: skip
        """The engine's hook: the n-best (token ids, score) of each source in `ids` (ids without EOS, prefix
        included), telling `on_done` of sentences whose search has ended, if it can, before it returns; each
        translation starting with its `forced` ids (a target prefix, may be empty); rows that `drop()` names
        leave the search where the engine can stop them; `terms`: each source's constraints (token ids), which
        its translations must hold."""
        raise NotImplementedError


class Translator(BatchTranslator):
    """mtx's own search over a model (any architecture)."""

    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, decode: DecodeConfig, device: torch.device):
        super().__init__(tokenizer, decode, device, model.config.max_len)
        self.model = model.eval()
        self.packed: dict[str, Seq2Seq] = {}  # the model's packed copies (models/packed.py), made at first use
        self.oom_retries = 0
        self.joins = torch.tensor(tokenizer.joins())  # pieces that go on with a word: none after a constraint

    def model_for(self, precision: str) -> Seq2Seq:
        """The model `precision` decodes with: on the CPU a packed copy (fp32: oneDNN's; int8: int8 weights),
        else the model itself (bf16 and fp16 autocast it)."""
        if precision == "int8" and self.device.type != "cpu":
            raise MtxError("decode.precision int8 runs on the CPU (torch's int8 kernels); on CUDA use bf16")
        if precision == "int8" and not available("int8"):
            raise MtxError("decode.precision int8: this torch build has no fbgemm int8 kernels; use fp32")
        if self.device.type != "cpu" or precision not in KINDS or not available(precision):
            return self.model
        if precision not in self.packed:
            self.packed[precision] = pack(self.model, precision)
        return self.packed[precision]

    def vocab_of(self, ids: list[list[int]], forced: list[list[int]] | None,
                 terms: list[list[list[int]]] | None) -> torch.Tensor:  # fmt: skip
        """The target ids a batch may output under the shortlist: its sources' lists, the frequent pieces, and
        the pieces of its target prefixes and terms (which the output must hold)."""
        if self.shortlist is None:
            raise MtxError("decode.shortlist: the model has no shortlist.txt (trained before mtx learnt one); "
                           "write it with `mtx shortlist --model MODEL`, or leave out --shortlist")  # fmt: skip
        extra = [i for f in forced or [] for i in f] + [i for group in terms or [] for t in group for i in t]
        return torch.from_numpy(self.shortlist.vocab(ids, extra)).to(self.device)

    def _search(self, ids: list[list[int]], c: DecodeConfig, use_cache: bool, on_done: Done | None,
                forced: list[list[int]] | None = None, drop: Drop | None = None,
                terms: list[list[list[int]]] | None = None) -> list[Result]:  # fmt: skip
        """Search one batch; out of GPU memory, retry it as two halves (and tell the user once)."""
        try:
            batch = collate(ids).to(self.device)
            heads = None if forced is None or not any(forced) else pad(forced).to(self.device)
            model, joins, done = self.model_for(c.precision), self.joins, on_done
            if c.shortlist:  # search over the batch's shortlist: target ids mapped in and out
                model = Shortlisted(model, self.vocab_of(ids, forced, terms))
                vocab, col = model.vocab.tolist(), model.column.tolist()
                joins = self.joins[model.vocab.cpu()]
                heads = None if heads is None else model.local(heads)
                terms = None if terms is None else [[[col[i] for i in t] for t in ts] for ts in terms]

                def globalised(results: list[Result]) -> list[Result]:
                    return [[([vocab[i] for i in toks], s) for toks, s in res] for res in results]

                if on_done is not None:
                    done = lambda rows, results: on_done(rows, globalised(results))  # noqa: E731
            cons = None if terms is None else Constraints.build(terms, self.device, joins)
            with autocast(self.device, c.precision):
                results = search(
                    model,
                    batch.src,
                    batch.src_mask,
                    c.beam,
                    c.alpha,
                    c.max_len_a,
                    c.max_len_b,
                    c.nbest,
                    use_cache,
                    c.stop,
                    done,
                    heads,
                    sampling_of(c),
                    drop,
                    repetition_of(c),
                    cons,
                )
            return globalised(results) if c.shortlist else results
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(ids) == 1:
                raise MtxError(f"out of memory translating one sentence of {len(ids[0])} pieces") from None
            if not self.oom_retries:
                log.warning(f"warning: out of memory with {len(ids)} sentences a batch; retrying smaller")
            self.oom_retries += 1
            half = len(ids) // 2

            def later(rows: list[int], results: list[Result]) -> None:  # the second half's rows, in the batch's
                on_done([half + r for r in rows], results)

            f1, f2 = (None, None) if forced is None else (forced[:half], forced[half:])
            t1, t2 = (None, None) if terms is None else (terms[:half], terms[half:])

            def drop_later() -> list[int]:
                return [r - half for r in drop() if r >= half]

            first = self._search(ids[:half], c, use_cache, on_done, f1, drop, t1)
            rest = self._search(ids[half:], c, use_cache, later if on_done else None, f2, drop and drop_later, t2)
            return first + rest

    @torch.inference_mode()
    def align(self, ids: list[list[int]], targets: list[list[int]], prefix: list[int] | None = None) -> list:
        """The model's cross-attention for each (source, translation), teacher-forced, averaged over layers and
        heads (it placed the tags of docs/deploy.md's examples better than the last or the first layer alone):
        (target pieces, source pieces) without the tag and EOS columns."""
        prefix = prefix or []
        out: list = [None] * len(ids)
        todo = [i for i in range(len(ids)) if ids[i] and targets[i]]
        lengths = [len(prefix) + len(ids[i]) + len(targets[i]) + 2 for i in todo]
        for group in sorted_batches(lengths, self.batch_tokens):
            idx = [todo[j] for j in group]
            batch = collate([prefix + ids[i] for i in idx], [targets[i] for i in idx]).to(self.device)
            try:
                w = self.model.cross_attention(batch.src, batch.src_mask, batch.tgt_in).mean(dim=(0, 2))  # (B, T, S)
            except NotImplementedError:  # an ensemble: no one attention (tags placed by position)
                return [None] * len(ids)
            for b, i in enumerate(idx):
                out[i] = w[b, : len(targets[i]), len(prefix) : len(prefix) + len(ids[i])].float().cpu()
        return out


def repetition_of(c: DecodeConfig) -> Repetition | None:
    """What `decode.no_repeat_ngram` and `decode.repetition_penalty` ask for (None: neither)."""
    r = Repetition(c.no_repeat_ngram, c.repetition_penalty)
    return r if r else None


def sampling_of(c: DecodeConfig) -> Sampling | None:
    """What `decode.sample` asks for (None: search): `decode.nbest` draws a sentence."""
    if not c.sample:
        return None
    topk, topp = parse_sample(c.sample)
    return Sampling(topk, topp, c.temperature, c.nbest, c.seed)
