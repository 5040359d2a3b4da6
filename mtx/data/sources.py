"""Where a corpus comes from: `--data` names one of five kinds, each read by `datasets`' own builders into
memory-mapped Arrow tables (cached under $HF_HOME), never into Python lists.

- a directory of `{split}.{lang}` text files (the `text` builder, one file a language);
- a TSV, CSV, JSONL or Parquet file, or a directory of `{split}.{ext}` such files (`csv`, `json`, `parquet`);
- a directory written by `DatasetDict.save_to_disk` (`load_from_disk`);
- `hf:NAME[:CONFIG]`, a hub dataset (`load_dataset(NAME, CONFIG)`; a local folder laid out as a hub repository
  goes through the same call, which is how the tests reach this path without a network).

Tables name their two sides by columns: the language codes (`de`, `en`), `data.columns=SRC_COL,TGT_COL`, or a
WMT-style `translation` column of {lang: sentence}. A split is a `datasets.Dataset` with string columns `src` and
`tgt`, and knows how to name its row i in an error (`file:line` or `file row N`).
"""

from __future__ import annotations

import time
from pathlib import Path

from mtx.config import DataConfig, is_name
from mtx.console import is_tty
from mtx.data.pages import cache_files, release_pages
from mtx.data.text import check_aligned, count_fields, scan_text
from mtx.errors import MtxError, UsageError

TABLE_BUILDERS = {".tsv": "csv", ".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
VALID_NAMES = ("validation", "valid", "dev", "val")
TEST_NAMES = ("test",)


class PairSplit:
    """One split of one pair: `ds` (loaded on first use) has string columns `src` and `tgt`; `key` identifies the
    data without loading it (the builder's config id: files, their dates and sizes, options), so that a run that
    finds its encoding in the cache never maps the text. Row i is `origin` line i + `first_line` (text files,
    CSV/TSV, JSONL) or row i + 1 (other tables); `tgt_origin` is the target side's file when it has its own."""

    def __init__(self, name: str, origin: str, load, key: str, first_line: int | None = None, tgt_origin: str = ""):
        self.name, self.origin, self.key, self.first_line, self.tgt_origin = name, origin, key, first_line, tgt_origin
        self._load, self._ds = load, None
        self.load_s = 0.0  # seconds the builder took (reading the files into Arrow, or finding its cache)

    @property
    def ds(self):
        if self._ds is None:
            t0 = time.time()
            self._ds = self._load()
            self.load_s = time.time() - t0
            self.release()
        return self._ds

    def release(self) -> None:
        """Give back the pages of the memory-mapped text read so far (mtx/data/pages.py)."""
        if self._ds is not None:
            release_pages(cache_files(self._ds))

    def __len__(self) -> int:
        return len(self.ds)

    def where(self, i: int, side: str = "src") -> str:
        origin = self.tgt_origin if side == "tgt" and self.tgt_origin else self.origin
        return f"{origin}:{i + self.first_line}" if self.first_line is not None else f"{origin} row {i + 1}"


def quiet_datasets() -> None:
    """datasets' progress bars on a terminal only, and no warnings (errors reach the user as MtxError)."""
    import datasets
    import huggingface_hub

    (datasets.enable_progress_bars if is_tty() else datasets.disable_progress_bars)()
    datasets.logging.set_verbosity_error()
    huggingface_hub.utils.logging.set_verbosity_error()  # no retry warnings: one line says what failed


class Corpus:
    """The corpus `spec` names (a path or `hf:NAME[:CONFIG]`); `split(role, src, tgt)` reads one pair's train,
    valid or test split, or returns None when the corpus has no such split."""

    def __init__(self, spec: str | Path, cfg: DataConfig):
        self.spec, self.cfg = str(spec), cfg
        quiet_datasets()
        if self.spec.startswith("hf:"):
            self.kind, self._dict = "hub", None
            return
        path = Path(self.spec)
        if path.is_file():
            self.kind = "table"
            self.files = {"train": path}
        elif not path.is_dir():
            raise MtxError(f"{path}: data not found (a directory, a table file or hf:NAME; set --data or MTX_DATA)")
        elif (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            self.kind, self._dict = "disk", None
        else:
            files = [p for p in sorted(path.iterdir()) if p.is_file()]
            tables = {p.stem: p for p in files if p.suffix in TABLE_BUILDERS}
            text = any(p.stem == cfg.train_split and p.suffix not in TABLE_BUILDERS for p in files)
            self.kind = "table" if tables and not text else "text"  # {train}.{lang} files: a text directory
            self.files = tables
        self.path = path

    def __str__(self) -> str:
        return self.spec

    def split_name(self, role: str) -> str | None:
        """The corpus' own name for `role` (train, valid, test), or None when it has none."""
        want = {"train": self.cfg.train_split, "valid": self.cfg.valid_split, "test": self.cfg.test_split}[role]
        if self.kind == "text":
            return want
        names = self._names()
        extra = {"train": ("train",), "valid": VALID_NAMES, "test": TEST_NAMES}[role]
        return next((n for n in (want, *extra) if n in names), None)

    def split(self, role: str, src: str, tgt: str, name: str | None = None) -> PairSplit | None:
        """`role`'s split (train, valid, test), or the split called `name`: an error when there is none."""
        if name is not None and not is_name(name):
            raise UsageError(f"--split {name!r}: a split's name (letters, digits, . _ -), not a path")
        if name is not None and self.kind != "text" and name not in self._names():
            raise MtxError(f"{self.spec}: no split {name!r} (it has {', '.join(self._names())})")
        name = name or self.split_name(role)
        if name is None:
            return None
        if self.kind == "text":
            if role == "valid" and not any((self.path / f"{name}.{lang}").exists() for lang in (src, tgt)):
                return None  # no validation files: training holds some pairs out
            return _text_split(self.path, name, src, tgt)
        if self.kind == "table":
            return self._table(name, src, tgt)
        origin = f"{self.spec} ({name})"
        ds = _pair_columns(self._dicts()[name], origin, src, tgt, self.cfg.columns)
        return PairSplit(name, origin, lambda: ds, ds._fingerprint)

    def _names(self) -> list[str]:
        return list(self.files) if self.kind == "table" else list(self._dicts())

    def _table(self, name: str, src: str, tgt: str) -> PairSplit:
        import datasets

        path = self.files[name]
        builder, kw = TABLE_BUILDERS[path.suffix], {}
        header = not _positions(self.cfg.columns)
        if builder == "csv":  # TSV: tabs and no quoting (sentences have quotes of their own)
            kw = {"sep": "\t", "quoting": 3} if path.suffix == ".tsv" else {}
            if not header:
                kw["column_names"] = [f"c{i}" for i in range(1, 1 + count_fields(path, kw.get("sep", ",")))]
        if builder != "parquet":
            scan_text(path, inner_cr=True)  # invalid UTF-8 named by its line, before the builder meets it
        files, columns = {"x": str(path)}, self.cfg.columns

        def load():
            try:
                ds = datasets.load_dataset(builder, data_files=files, split="x", **kw)
            except Exception as e:  # a malformed table: the builder's reason, in one line
                raise MtxError(f"{path}: cannot read as {path.suffix[1:]} ({_reason(e)})") from None
            return _pair_columns(ds, str(path), src, tgt, columns)

        key = f"{_builder_id(builder, files, kw)}|{columns}|{src}|{tgt}"
        first = (2 if header else 1) if builder == "csv" else (1 if builder == "json" else None)
        return PairSplit(name, str(path), load, key, first)

    def _dicts(self) -> dict:
        import datasets

        if self._dict is None:
            if self.kind == "disk":
                try:
                    loaded = datasets.load_from_disk(str(self.path))
                except Exception as e:
                    raise MtxError(f"{self.path}: cannot load a saved dataset ({_reason(e)})") from None
            else:
                loaded = load_hub(self.spec)
            self._dict = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
        return self._dict


def load_hub(spec: str):
    """`hf:NAME[:CONFIG]` through `datasets.load_dataset` (from the hub, or from a local folder laid out as one)."""
    import datasets

    name, _, config = spec.removeprefix("hf:").partition(":")
    if not name or ":" in config:
        raise MtxError(f"{spec}: expected hf:NAME or hf:NAME:CONFIG, e.g. hf:wmt/wmt14:de-en")
    try:
        return datasets.load_dataset(name, config or None)
    except Exception as e:  # offline, no such dataset, no such config: one line, with what to do
        raise MtxError(
            f"{spec}: cannot load {name}{f' ({config})' if config else ''} ({_reason(e)}); offline, save it with "
            "DatasetDict.save_to_disk elsewhere and pass that directory to --data"
        ) from None


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _positions(columns: str) -> bool:
    return bool(columns) and all(c.strip().isdigit() for c in columns.split(","))


def _pair_columns(ds, origin: str, src: str, tgt: str, columns: str):
    """`ds` narrowed to string columns `src`, `tgt` (from the named columns, the language columns or a
    `translation` column); an error naming `origin` when it has none of them."""
    have = list(ds.column_names)
    if columns:
        names = [c.strip() for c in columns.split(",")]
        names = [f"c{c}" for c in names] if _positions(columns) else names
        if len(names) != 2:
            raise MtxError(f"data.columns={columns}: expected two columns, SRC_COL,TGT_COL")
    elif src in have and tgt in have:
        names = [src, tgt]
    elif "translation" in have:
        ds = ds.flatten()
        names, have = [f"translation.{src}", f"translation.{tgt}"], list(ds.column_names)
        if missing := [n for n in names if n not in have]:
            langs = ", ".join(c.split(".", 1)[1] for c in have if c.startswith("translation."))
            raise MtxError(f"{origin}: the translation column has {langs}, not {missing[0].split('.', 1)[1]}")
    else:
        names = [src, tgt]
    if missing := [n for n in names if n not in have]:
        raise MtxError(
            f"{origin}: no column {missing[0]!r} (it has {', '.join(have)}); name the two with "
            "--set data.columns=SRC_COL,TGT_COL"
        )
    for n in names:
        dtype = getattr(ds.features[n], "dtype", None)
        if dtype not in ("string", "large_string"):
            raise MtxError(f"{origin}: column {n!r} holds {ds.features[n]}, not text")
    ds = ds.select_columns(names)
    return ds.rename_columns({names[0]: "src", names[1]: "tgt"}) if names != ["src", "tgt"] else ds


def _text_split(data_dir: Path, split: str, src: str, tgt: str) -> PairSplit:
    """`{split}.{src}` and `{split}.{tgt}`, checked (UTF-8, one line per line, aligned) and read by the text
    builder into one table with columns src, tgt."""
    import datasets

    paths = data_dir / f"{split}.{src}", data_dir / f"{split}.{tgt}"
    for p in paths:
        if not p.is_file():
            have = sorted(x.name for x in data_dir.iterdir() if x.is_file())[:8]
            raise MtxError(f"{p}: file not found (the directory has: {', '.join(have) or 'nothing'})")
    counts = scan_text(paths[0]), scan_text(paths[1])
    check_aligned(paths, counts)

    def load():
        sides = []
        for p, col in zip(paths, ("src", "tgt"), strict=True):
            d = datasets.load_dataset("text", data_files={"x": str(p)}, split="x")
            if len(d) != counts[0]:
                raise MtxError(f"{p}: datasets read {len(d)} lines where {counts[0]} were expected")
            sides.append(d.rename_column("text", col))
        return datasets.concatenate_datasets(sides, axis=1)

    key = "|".join(_builder_id("text", {"x": str(p)}, {}) for p in paths)
    return PairSplit(split, str(paths[0]), load, key, 1, str(paths[1]))


def _builder_id(builder: str, files: dict, kw: dict) -> str:
    """The id `datasets` gives these files read with these options (it changes with a file's date or size)."""
    import datasets

    return datasets.load_dataset_builder(builder, data_files=files, **kw).config_id


def data_spec(data: str | Path | None, cfg: DataConfig) -> str | None:
    """What `--data` (or `data.path` in a config) names, or None for the default corpus (mtx/data/multi30k.py)."""
    if data is not None:
        return str(data)
    return cfg.path or None
