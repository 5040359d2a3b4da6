"""A vocabulary shortlist (Marian's lexical shortlist, CTranslate2's vocabulary map): for each source piece the
`k` target pieces it co-occurs with most often in the training pairs, plus the `n` most frequent target pieces,
learnt when the model is trained. Search then scores only the union for a batch's sources.

Chosen on val (docs/performance.md): ranking by the raw count c(s, t) with k = 100 kept BLEU (40.38 against
40.17 without a shortlist) with the smallest batch vocabularies; the Dice coefficient 2·c(s, t) / (c(s) + c(t))
(`by="dice"`) lets rarer pieces in, covers a little more of the references, and doubles the vocabularies. The
file is CTranslate2's vocabulary-map format, so that the same file serves `--engine ct2` and the Argos packages:
a line `<TAB>frequent pieces` (always allowed), then a line per source piece, `piece<TAB>target pieces`, pieces
separated by spaces.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mtx.config import DataConfig
from mtx.data.encode import IdColumn
from mtx.data.tokenizer import BOS, EOS, PAD, UNK, Tokenizer
from mtx.errors import MtxError
from mtx.files import atomic_write

log = logging.getLogger(__name__)

SHORTLIST = "shortlist.txt"  # in the model directory
ALWAYS = (PAD, UNK, BOS, EOS)


class Shortlist:
    """`table` (V, k): each source id's target ids, -1 where it has fewer; `frequent`: ids always allowed."""

    def __init__(self, table: np.ndarray, frequent: np.ndarray):
        self.table = table
        self.frequent = np.union1d(np.asarray(frequent, np.int64), ALWAYS)

    @property
    def vocab_size(self) -> int:
        return self.table.shape[0]

    def vocab(self, sources: Iterable[Iterable[int]], extra: Iterable[int] = ()) -> np.ndarray:
        """The sorted target ids allowed for a batch of `sources` (ids), with `extra` ids (a forced prefix, terms)."""
        ids = np.fromiter((i for s in sources for i in s), np.int64)
        rows = self.table[np.unique(ids[(ids >= 0) & (ids < self.vocab_size)])].ravel()
        more = np.fromiter(extra, np.int64)
        return np.unique(np.concatenate([self.frequent, rows[rows >= 0], more]))

    def write(self, path: Path, tok: Tokenizer) -> None:
        piece = tok.sp.id_to_piece
        lines = ["\t" + " ".join(piece(int(i)) for i in self.frequent if i not in (PAD, BOS))]
        for s, row in enumerate(self.table):
            row = row[row >= 0]
            if len(row) and s not in ALWAYS:
                lines.append(piece(s) + "\t" + " ".join(piece(int(t)) for t in row))
        atomic_write(path, ("\n".join(lines) + "\n").encode())

    @classmethod
    def read(cls, path: Path, tok: Tokenizer) -> Shortlist:
        """A shortlist file as `write` wrote it (or any vocabulary map of single source pieces for `tok`)."""
        rows: dict[int, list[int]] = {}
        frequent: list[int] = []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise MtxError(f"{path}: unreadable ({e})") from None
        for n, line in enumerate(text.splitlines(), 1):
            key, tab, targets = line.partition("\t")
            if not tab or " " in key:
                raise MtxError(f"{path}:{n}: expected 'source piece<TAB>target pieces'")
            ids = []
            for p in targets.split():
                if not tok.has_piece(p):
                    raise MtxError(f"{path}:{n}: {p!r} is not a piece of the model's tokenizer")
                ids.append(tok.piece_id(p))
            if not key:
                frequent += ids
            elif tok.has_piece(key):
                rows.setdefault(tok.piece_id(key), []).extend(ids)
        k = max((len(v) for v in rows.values()), default=0)
        table = np.full((len(tok), k), -1, np.int64)
        for s, ids in rows.items():
            table[s, : len(ids)] = ids
        return cls(table, np.asarray(frequent, np.int64))


def learn(src: IdColumn, tgt: IdColumn, rows: np.ndarray, vocab_size: int, k: int, n: int, chunk: int = 1 << 16,
          by: str = "count") -> Shortlist:  # fmt: skip
    """The shortlist of the training pairs `rows` of (`src`, `tgt`): co-occurrences counted a chunk of pairs at
    a time (memory bounded by the vocabulary, not the corpus), each source piece's `k` most frequent companions
    (`by="dice"`: the best by Dice, for comparison), and the `n` most frequent target pieces."""
    cooc = sp.csr_matrix((vocab_size, vocab_size), dtype=np.float64)
    df_src, df_tgt, freq = (np.zeros(vocab_size) for _ in range(3))
    for at in range(0, len(rows), chunk):
        part = rows[at : at + chunk]
        s, t = _presence(src, part, vocab_size), _presence(tgt, part, vocab_size)
        cooc = cooc + (s.T @ t).tocsr()
        df_src += np.asarray(s.sum(0)).ravel()
        df_tgt += np.asarray(t.sum(0)).ravel()
        ids, lens = tgt.gather(part)
        freq += np.bincount(ids[ids != PAD], minlength=vocab_size)[:vocab_size]
    table = np.full((vocab_size, k), -1, np.int64)
    for s in range(vocab_size):
        lo, hi = cooc.indptr[s], cooc.indptr[s + 1]
        cols, counts = cooc.indices[lo:hi], cooc.data[lo:hi]
        keep = ~np.isin(cols, ALWAYS)
        cols, counts = cols[keep], counts[keep]
        if not len(cols):
            continue
        score = 2 * counts / (df_src[s] + df_tgt[cols]) if by == "dice" else counts
        best = np.lexsort((cols, -score))[:k]  # ties: the lower id
        table[s, : len(best)] = cols[best]
    frequent = np.argsort(-freq, kind="stable")[:n]
    return Shortlist(table, frequent[freq[frequent] > 0])


def _presence(col: IdColumn, rows: np.ndarray, vocab_size: int) -> sp.csr_matrix:
    """(pairs, V) 0/1: which pieces each of `rows` holds."""
    ids, _ = col.gather(rows)
    r, c = np.nonzero(ids != PAD)
    m = sp.csr_matrix((np.ones(len(r)), (r, ids[r, c])), shape=(len(rows), vocab_size))
    m.data[:] = 1.0  # duplicates were summed
    return m


def learn_shortlist(data, d: DataConfig) -> Shortlist:
    """The shortlist of prepared training `data` (mtx/data/prepare.py's Data) with `d`'s k and n."""
    t0 = time.perf_counter()
    b = data.train
    short = learn(b.src, b.tgt, b.rows, len(data.tokenizer), d.shortlist_k, d.shortlist_n)
    log.info(f"shortlist: {d.shortlist_k} target pieces per source piece and the {d.shortlist_n} most frequent "
             f"({time.perf_counter() - t0:.1f}s)")  # fmt: skip
    return short
