"""`mtx shortlist`: the vocabulary shortlist (mtx/data/shortlist.py) of a model trained before mtx learnt one, or
with other k and n: its training corpus read again (the encoding cache makes that quick) with its own tokenizer."""

from __future__ import annotations

from pathlib import Path

from mtx import checkpoint
from mtx.data.multi30k import ensure_data_dir
from mtx.data.pairs import languages, pairs_of
from mtx.data.prepare import prepare_data
from mtx.data.shortlist import SHORTLIST, Shortlist, learn_shortlist
from mtx.data.sources import data_spec
from mtx.data.tokenizer import Tokenizer
from mtx.errors import UsageError


def make_shortlist(model_dir: Path, data: str | None = None, k: int | None = None,
                   n: int | None = None) -> tuple[Path, Shortlist]:  # fmt: skip
    """Learn `model_dir`'s shortlist from its corpus (or `data`) with its k and n (or these) and write it to
    MODEL/shortlist.txt; returns (the path, the shortlist)."""
    cfg, _ = checkpoint.read_config(model_dir)
    cfg.data.shortlist_k = cfg.data.shortlist_k if k is None else k
    cfg.data.shortlist_n = cfg.data.shortlist_n if n is None else n
    if cfg.data.shortlist_k < 1 or cfg.data.shortlist_n < 0:
        raise UsageError("--k must be at least 1 and --n at least 0")
    tok = Tokenizer.load(model_dir / checkpoint.TOKENIZER)
    spec = data_spec(data, cfg.data) or ensure_data_dir(tuple(languages(pairs_of(cfg.data))))
    short = learn_shortlist(prepare_data(cfg, spec, tok), cfg.data)
    short.write(model_dir / SHORTLIST, tok)
    return model_dir / SHORTLIST, short
