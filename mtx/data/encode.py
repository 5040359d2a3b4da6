"""Encoding once: a split's sentences become int32 token columns through `Dataset.map`, in an Arrow file cached
under $HF_HOME keyed by the data's fingerprint and the tokenizer, and read back memory-mapped.

`IdColumn` is such a column (or several, end to end) seen as per-chunk numpy views of the Arrow buffers: a batch
is gathered from them without copying the corpus into memory, so resident memory grows with the index arrays
(lengths, order), not with the text.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import sentencepiece as spm

from mtx.data.pages import cache_files, mapped_regions, release_pages
from mtx.data.sources import PairSplit
from mtx.data.tokenizer import PAD

ENCODING_VERSION = 2  # bump when what is written changes (2: over-long lines cut, see `_cut`)
PIECE_CHARS = 32  # characters a piece covers at most, with room for normalisation (sentencepiece: 16)
MAP_BATCH = 50_000  # rows a map call encodes (and a chunk of the cached columns)

_processors: dict[bytes, object] = {}


def cache_dir() -> Path:
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "mtx-encoded"


def cache_key(split: PairSplit, proto: bytes, max_tokens: int) -> str:
    """What the encoded columns depend on: the data (its fingerprint), the tokenizer, the length beyond which a
    line is cut (and dropped), this code's version."""
    key = f"{ENCODING_VERSION}|{split.key}|{max_tokens}|".encode()
    h = hashlib.sha256(key + hashlib.sha256(proto).digest())
    return h.hexdigest()[:24]


def tokenizer_cache(settings: str) -> Path:
    """Where the tokenizer trained on this data with these settings is kept (training it is deterministic)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    return cache_dir() / f"tokenizer-{hashlib.sha256(settings.encode()).hexdigest()[:24]}.model"


def encode_split(split: PairSplit, proto: bytes, max_tokens: int, num_proc: int = 1) -> tuple[object, bool]:
    """(the encoded dataset, columns `src_ids` and `tgt_ids`, whether it came from the cache); a line certain to
    have `max_tokens` pieces or more (which cleaning drops) is encoded only as far as that is certain."""
    import datasets

    stem = cache_dir() / cache_key(split, proto, max_tokens)
    if (cached := _cached(stem)) is not None:
        release_pages(cache_files(cached))  # opening the file read through it
        return cached, True
    stem.parent.mkdir(parents=True, exist_ok=True)
    num_proc = max(1, min(num_proc, len(split) // MAP_BATCH))
    ds = split.ds.with_format("arrow").map(
        _encode_table,
        batched=True,
        batch_size=MAP_BATCH,
        fn_kwargs={"proto": proto, "files": cache_files(split.ds), "max_tokens": max_tokens},
        remove_columns=list(split.ds.column_names),
        features=datasets.Features({f"{c}_ids": datasets.Sequence(datasets.Value("int32")) for c in ("src", "tgt")}),
        num_proc=num_proc if num_proc > 1 else None,
        cache_file_name=f"{stem}.arrow",
        new_fingerprint=stem.name,
        desc="encoding",
    )
    split.release()
    release_pages(cache_files(ds))
    return ds.with_format(None), False


def _cached(stem: Path):
    """The encoded dataset at `stem` (one file, or the shards of a map with num_proc), or None."""
    import datasets

    if Path(f"{stem}.arrow").is_file():
        return datasets.Dataset.from_file(f"{stem}.arrow")
    shards = sorted(stem.parent.glob(f"{stem.name}_*_of_*.arrow"))
    if not shards or len(shards) != int(shards[0].stem.rsplit("_of_", 1)[1]):
        return None
    return datasets.concatenate_datasets([datasets.Dataset.from_file(str(p)) for p in shards])


def _cut(text: str | None, max_tokens: int) -> str:
    """`text`, or, when it is long, its shortest beginning with `PIECE_CHARS * max_tokens` visible characters:
    a piece covers at most `PIECE_CHARS` of them (sentencepiece's 16, with room for normalisation), so those alone
    make `max_tokens` pieces and the line is dropped whatever follows: no need to encode all of it."""
    text = text or ""
    need = PIECE_CHARS * max_tokens
    if len(text) <= need:
        return text
    seen = 0
    for i, c in enumerate(text[: 4 * need]):
        seen += c.isprintable() and not c.isspace()
        if seen >= need:
            return text[: i + 1]
    return text  # mostly spaces or control characters: as it is


def _encode_table(table, proto: bytes, files: list[str], max_tokens: int):
    """One map batch (a pyarrow table of `src`, `tgt` strings) -> list<int32> columns; a missing cell is empty.
    The text's pages read for it are given back (in the map's worker processes too)."""
    import pyarrow as pa

    sp = _processors.get(proto)
    if sp is None:
        sp = _processors[proto] = spm.SentencePieceProcessor(model_proto=proto)
    out = {}
    for col in ("src", "tgt"):
        ids = sp.encode([_cut(t, max_tokens) for t in table.column(col).to_pylist()], out_type=int)
        lens = np.fromiter(map(len, ids), np.int32, count=len(ids))
        offsets = np.zeros(len(ids) + 1, np.int32)
        np.cumsum(lens, out=offsets[1:])
        values = np.fromiter(itertools.chain.from_iterable(ids), np.int32, count=int(offsets[-1]))
        out[f"{col}_ids"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    release_pages(files)
    return pa.table(out)


class IdColumn:
    """A list<int32> column as numpy views of its Arrow chunks (memory-mapped when the table is): `lengths`
    (int32, one per row) and `gather(rows)`, the rows' ids right-padded with PAD."""

    def __init__(
        self,
        chunks: list[tuple[np.ndarray, np.ndarray]],
        files: list[str] | None = None,
        lengths: np.ndarray | None = None,
    ):
        self.files = files or []  # the memory-mapped files the chunks are in
        self._regions: list[tuple[int, int]] | None = None
        self.values = [v for v, _ in chunks]
        self.offsets = [o for _, o in chunks]
        sizes = [len(o) - 1 for o in self.offsets]
        self.starts = np.cumsum([0, *sizes])
        if lengths is None:  # reads every offset (a memory-mapped column: all of its pages)
            lengths = np.concatenate([np.diff(o) for o in self.offsets] or [np.zeros(0, np.int32)]).astype(np.int32)
        self.lengths = lengths

    @classmethod
    def of(cls, ds, column: str) -> IdColumn:
        """Zero-copy views of `ds[column]` (a Dataset without an indices mapping)."""
        chunks = []
        for c in ds.data.column(column).chunks:
            if len(c):
                chunks.append((c.values.to_numpy(zero_copy_only=False), c.offsets.to_numpy()))
        column = cls(chunks, cache_files(ds))
        column.release()
        return column

    def release(self) -> None:
        """Give back the memory-mapped pages read so far (see `release_pages`); cheap enough for every step."""
        if self._regions is None:
            self._regions = mapped_regions(self.files)
        release_pages(self.files, self._regions)

    @classmethod
    def from_lists(cls, seqs: list[list[int]]) -> IdColumn:
        lens = np.array([len(s) for s in seqs], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        values = np.fromiter(itertools.chain.from_iterable(seqs), np.int32, count=int(offsets[-1]))
        return cls([(values, offsets)])

    @classmethod
    def concat(cls, columns: list[IdColumn]) -> IdColumn:
        chunks = [(v, o) for c in columns for v, o in zip(c.values, c.offsets, strict=True)]
        files = list(dict.fromkeys(f for c in columns for f in c.files))
        return cls(chunks, files, np.concatenate([c.lengths for c in columns]))

    def __len__(self) -> int:
        return int(self.starts[-1])

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids (B, M) int64 padded with PAD, lengths (B,)) of `rows`, in their order."""
        rows = np.asarray(rows, np.int64)
        lens = self.lengths[rows].astype(np.int64)
        out = np.full((len(rows), int(lens.max(initial=0))), PAD, np.int64)
        chunk = np.searchsorted(self.starts, rows, side="right") - 1
        for c in np.unique(chunk):
            at = np.flatnonzero(chunk == c)
            off = self.offsets[c][rows[at] - self.starts[c]].astype(np.int64)
            n = lens[at]
            if not n.max(initial=0):
                continue
            j = np.arange(int(n.max(initial=0)))
            mask = j < n[:, None]
            pos = np.minimum(off[:, None] + j, len(self.values[c]) - 1)
            out[at[:, None], j] = np.where(mask, self.values[c][pos], PAD)
        return out, lens
