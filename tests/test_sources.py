"""Every input kind `--data` takes, the encoding cache, held-out validation, cleaning rules and their errors."""

import json
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY_SETTINGS, make_pairs, write_corpus
from sacrebleu.metrics import BLEU

from mtx.config import build_config
from mtx.data.batching import TrainBatches, collate
from mtx.data.encode import IdColumn
from mtx.data.prepare import prepare_data
from mtx.data.sources import Corpus
from mtx.errors import MtxError

SETTINGS = [*TINY_SETTINGS, "data.valid_size=7"]
QUOTED = [('Ein "Hund".', 'A "dog".'), ("Ein 'Mann'", "A 'man'")]  # quotes stay text in a TSV


def _pairs(n, seed):
    return make_pairs(n, seed)


def _train_pairs(corpus, settings=()):
    """(the training pairs as read, valid pairs) of a corpus, through Corpus as training reads it."""
    cfg = build_config(None, [*SETTINGS, *settings])
    c = Corpus(corpus, cfg.data)
    split = c.split("train", "de", "en")
    cols = split.ds.to_dict()
    valid = c.split("valid", "de", "en")
    return list(zip(cols["src"], cols["tgt"], strict=True)), valid


def _tsv(path, pairs, header="de\ten\n"):
    path.write_text(header + "".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")


def _jsonl(path, pairs, translation=False):
    rows = [{"translation": {"de": s, "en": t}} if translation else {"de": s, "en": t, "id": i} for i, (s, t) in
            enumerate(pairs)]  # fmt: skip
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _parquet(path, pairs):
    pq.write_table(pa.table({"en": [t for _, t in pairs], "de": [s for s, _ in pairs]}), path)


@pytest.mark.parametrize("kind", ["text", "tsv", "csv", "jsonl", "translation", "parquet", "headerless"])
def test_each_file_kind_reads_the_pairs_in_order(tmp_path, kind):
    pairs = _pairs(40, 1) + QUOTED
    settings = []
    if kind == "text":
        write_corpus(tmp_path, {"train": 40}, seed=1)
        pairs = _pairs(40, 1)
        data = tmp_path
    elif kind == "tsv":
        _tsv(data := tmp_path / "c.tsv", pairs)
    elif kind == "headerless":
        _tsv(data := tmp_path / "c.tsv", pairs, header="")
        settings = ["data.columns=1,2"]
    elif kind == "csv":
        data = tmp_path / "c.csv"
        datasets.Dataset.from_dict({"de": [s for s, _ in pairs], "en": [t for _, t in pairs]}).to_csv(data)
    elif kind in ("jsonl", "translation"):
        _jsonl(data := tmp_path / "c.jsonl", pairs, translation=kind == "translation")
    else:
        _parquet(data := tmp_path / "c.parquet", pairs)
    read, valid = _train_pairs(data, settings)
    assert read == pairs and valid is None  # no validation split: training holds one out


def test_a_directory_of_split_tables_and_named_columns(tmp_path):
    train, val = _pairs(30, 2), _pairs(5, 3)
    for name, pairs in (("train", train), ("validation", val)):
        pq.write_table(pa.table({"source": [s for s, _ in pairs], "target": [t for _, t in pairs]}),
                       tmp_path / f"{name}.parquet")  # fmt: skip
    read, valid = _train_pairs(tmp_path, ["data.columns=source,target"])
    assert read == train and valid.ds.to_dict() == {"src": [s for s, _ in val], "tgt": [t for _, t in val]}


def _dataset_dict(pairs_by_split):
    return datasets.DatasetDict(
        {
            k: datasets.Dataset.from_dict({"translation": [{"de": s, "en": t} for s, t in v]})
            for k, v in pairs_by_split.items()
        }
    )


def test_save_to_disk_directory(tmp_path):
    train, val = _pairs(30, 4), _pairs(6, 5)
    _dataset_dict({"train": train, "validation": val}).save_to_disk(str(tmp_path / "saved"))
    read, valid = _train_pairs(tmp_path / "saved")
    assert read == train and len(valid) == 6


def test_hub_layout_through_load_dataset(tmp_path):
    """hf:NAME:CONFIG goes through datasets.load_dataset(NAME, CONFIG); a folder laid out as a hub repository
    (configs in the README's YAML) takes the same call without a network."""
    repo = tmp_path / "repo"
    train, val = _pairs(30, 6), _pairs(6, 7)
    (repo / "de-en").mkdir(parents=True)
    _dataset_dict({"train": train})["train"].to_parquet(repo / "de-en" / "train-00000.parquet")
    _dataset_dict({"validation": val})["validation"].to_parquet(repo / "de-en" / "validation-00000.parquet")
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: de-en\n  data_files:\n  - split: train\n    path: de-en/train-*.parquet\n"
        "  - split: validation\n    path: de-en/validation-*.parquet\n---\n"
    )
    read, valid = _train_pairs(f"hf:{repo}:de-en")
    assert read == train and valid.ds.to_dict()["src"] == [s for s, _ in val]


def test_unknown_hub_forms_fail_in_one_line(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cfg = build_config(None, SETTINGS)
    for spec, match in (("hf:", "expected hf:NAME"), ("hf:a:b:c", "expected hf:NAME"),
                        ("hf:nobody/no-such-corpus", "hf:nobody/no-such-corpus: cannot load")):  # fmt: skip
        with pytest.raises(MtxError, match=match) as e:
            Corpus(spec, cfg.data).split("train", "de", "en")
        assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "name, data, settings, message",
    [
        ("c.tsv", "de\ten\nEin Hund.\tA dog.\n\xff\n", [], "c.tsv:3: invalid UTF-8 at byte 0"),
        ("c.jsonl", '{"de": "a", "en": "b"}\n{"de": "\xfe"}\n', [], "c.jsonl:2: invalid UTF-8"),
        ("c.tsv", "de\tfr\nEin Hund.\tUn chien.\n", [], "c.tsv: no column 'en' (it has de, fr)"),
        ("c.jsonl", '{"translation": {"de": "a", "fr": "b"}}\n', [], "the translation column has de, fr, not en"),
        ("c.tsv", "de\ten\na\tb\n", ["data.columns=x,en"], "no column 'x'"),
    ],
)
def test_table_errors_name_the_file(tmp_path, name, data, settings, message):
    raw = data.encode("latin-1") if "\xff" in data or "\xfe" in data else data.encode()
    (tmp_path / name).write_bytes(raw)
    with pytest.raises(MtxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _train_pairs(tmp_path / name, settings)


def test_encoding_is_cached_by_data_and_tokenizer(tmp_path, logs):
    write_corpus(tmp_path / "c", {"train": 80, "val": 10})
    cfg = build_config(None, SETTINGS)
    first = prepare_data(cfg, tmp_path / "c")
    second = prepare_data(build_config(None, SETTINGS), tmp_path / "c", tok=first.tokenizer)
    assert first.report["de-en"]["cache"] == "written" and second.report["de-en"]["cache"] == "hit"
    assert any("from the cache" in x for x in logs)
    b1, b2 = first.train.epoch(0), second.train.epoch(0)
    assert all(
        torch.equal(first.train.collate(x).src, second.train.collate(y).src) for x, y in zip(b1, b2, strict=True)
    )
    other = prepare_data(build_config(None, [*SETTINGS, "model.vocab_size=90"]), tmp_path / "c")
    assert other.report["de-en"]["cache"] == "written"  # another tokenizer, another encoding
    (tmp_path / "c" / "train.en").write_text("Changed.\n" * 80)  # another corpus under the same name
    again = prepare_data(build_config(None, SETTINGS), tmp_path / "c", tok=first.tokenizer)
    assert again.report["de-en"]["cache"] == "written"


def test_held_out_validation_when_the_corpus_has_none(tmp_path, logs):
    pairs = _pairs(200, 8)
    _tsv(tmp_path / "c.tsv", pairs)
    data = prepare_data(build_config(None, SETTINGS), tmp_path / "c.tsv")
    (v,) = data.valid
    assert len(v.split.src) == 7 and len(data.train) == 193 and data.report["de-en"]["valid_held_out"] == 7
    assert any("no validation split; held out 7 training pairs (seed 1)" in x for x in logs)
    ids = data.train.collate(range(len(data.train))).src.tolist()
    train = set(data.tokenizer.decode([[i for i in x if i > 3] for x in ids]))
    assert not train & set(v.split.src) and len(train | set(v.split.src)) == 200
    again = prepare_data(build_config(None, SETTINGS), tmp_path / "c.tsv")
    assert again.valid[0].split.src == v.split.src  # seeded


def test_cleaning_rules_count_and_name_what_they_drop(tmp_path, logs):
    pairs = _pairs(60, 9)
    src, tgt = [s for s, _ in pairs], [t for _, t in pairs]
    src[4], tgt[9] = "", "   "  # empty sides: lines 5 and 10
    src[20] = " ".join(["hund"] * 40)  # too long
    src[30], tgt[30] = "Hund.", "A dog runs here there here there here there here there here there."  # ratio
    (tmp_path / "train.de").write_text("".join(x + "\n" for x in src), encoding="utf-8")
    (tmp_path / "train.en").write_text("".join(x + "\n" for x in tgt), encoding="utf-8")
    write_corpus(tmp_path / "v", {"val": 5})
    for lang in ("de", "en"):
        (tmp_path / f"val.{lang}").write_bytes((tmp_path / "v" / f"val.{lang}").read_bytes())
    settings = [*SETTINGS, "data.max_tokens=30", "model.max_len=64", "data.max_length_ratio=2.5"]
    data = prepare_data(build_config(None, settings), tmp_path)
    rep = data.report["de-en"]
    assert (rep["empty"], rep["too_long"], rep["rows"]) == (2, 1, 60) and rep["ratio"] >= 1
    assert rep["kept"] == 60 - 3 - rep["ratio"] == len(data.train)
    assert any(f"{tmp_path / 'train.de'}:5, {tmp_path / 'train.en'}:10" in x for x in logs), logs
    assert any("longer than 30 pieces" in x for x in logs) and any("length ratio above 2.5" in x for x in logs)
    with pytest.raises(MtxError, match=r"train.de:5: empty line in a parallel corpus"):
        prepare_data(build_config(None, [*settings, "data.strict=true"]), tmp_path)


def test_gathering_across_chunks_with_tags_equals_padded_lists():
    rng = np.random.default_rng(0)
    seqs = [[int(x) for x in rng.integers(4, 99, rng.integers(1, 12))] for _ in range(90)]
    tgts = [[int(x) for x in rng.integers(4, 99, rng.integers(1, 12))] for _ in range(90)]
    col = IdColumn.concat([IdColumn.from_lists(seqs[:50]), IdColumn.from_lists(seqs[50:])])
    tcol = IdColumn.concat([IdColumn.from_lists(tgts[:30]), IdColumn.from_lists(tgts[30:])])
    rows = np.array([3, 7, 49, 50, 51, 88, 89, 10])
    tags = np.array([90, 91, 90, 91, 90, 91, 90, 91], np.int32)
    tb = TrainBatches(col, tcol, 100, 0, rows=rows, tags=tags)
    idx = [7, 0, 3, 4, 5]
    got = tb.collate(idx)
    want = collate([[int(tags[i])] + seqs[rows[i]] for i in idx], [tgts[rows[i]] for i in idx])
    for name in ("src", "src_mask", "tgt_in", "tgt_out"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name


def _mapped_kb(path) -> int:
    """Resident KiB of this process' mappings of `path` (/proc/self/smaps)."""
    total, mine = 0, False
    with open("/proc/self/smaps") as f:
        lines = f.readlines()
    for line in lines:
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            mine = len(head) >= 6 and head[-1] == str(path)
        elif mine and line.startswith("Rss:"):
            total += int(head[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux only")
def test_release_gives_back_mapped_pages_and_keeps_the_data(tmp_path):
    ids = [[int(x) for x in np.arange(i % 50 + 1) + 4] for i in range(40_000)]
    ds = datasets.Dataset.from_dict({"src_ids": ids}).with_format(None)
    path = tmp_path / "ids.arrow"
    ds.map(lambda b: b, batched=True, cache_file_name=str(path))
    mapped = datasets.Dataset.from_file(str(path))
    col = IdColumn.of(mapped, "src_ids")  # releases once built
    rows = np.arange(0, 40_000, 7)
    before, _ = col.gather(rows)
    assert _mapped_kb(path) > 1000  # reading made the file resident
    col.release()
    assert _mapped_kb(path) < 200
    after, _ = col.gather(rows)  # read again from the page cache, the same
    assert np.array_equal(before, after) and after[0, 0] == 4


def test_bench_data_prints_cold_and_cached(tmp_path):
    from typer.testing import CliRunner

    from mtx.cli.main import app

    write_corpus(tmp_path / "c", {"train": 300, "val": 20})
    r = CliRunner().invoke(app, ["bench", "data", "--data", str(tmp_path / "c"), "--workdir", str(tmp_path / "w"),
                                 "--set", "model.vocab_size=100"])  # fmt: skip
    assert r.exit_code == 0, r.output
    cold, cached = (json.loads(x) for x in r.stdout.splitlines())
    assert (cold["run"], cold["cache"], cached["run"], cached["cache"]) == ("cold", ["written"], "cached", ["hit"])
    assert cold["train_pairs"] == cached["train_pairs"] == 300 and 0 <= cold["padding_fraction"] < 1
    assert cold["peak_rss_mb"] > 0 and cached["tokenizer_s"] < cold["tokenizer_s"] + 1


def test_tokenizer_sample_is_bounded_seeded_and_from_both_sides(tmp_path):
    from mtx.data.prepare import tokenizer_sample

    pairs = _pairs(3000, 10)
    _tsv(tmp_path / "c.tsv", pairs)
    split = Corpus(tmp_path / "c.tsv", build_config(None, SETTINGS).data).split("train", "de", "en")
    sample = list(tokenizer_sample([("de", "en")], [split], 1000, seed=1))
    assert len(sample) == 1000 and sample == list(tokenizer_sample([("de", "en")], [split], 1000, seed=1))
    assert sample != list(tokenizer_sample([("de", "en")], [split], 1000, seed=2))
    src, tgt = sample[:500], sample[500:]
    by_src = dict(pairs)
    assert [by_src[x] for x in src] == tgt  # the same rows of both sides
    assert len(list(tokenizer_sample([("de", "en")], [split], 10_000, seed=1))) == 6000  # all, when fewer


def test_train_and_evaluate_a_table_corpus_end_to_end(tmp_path):
    """A directory of TSV splits: training reads train and validation, evaluate finds the model's corpus and its
    test split without --data."""
    from typer.testing import CliRunner

    from mtx.cli.main import app

    (tmp_path / "c").mkdir()
    for name, n, seed in (("train", 200, 11), ("validation", 10, 12), ("test", 12, 13)):
        _tsv(tmp_path / "c" / f"{name}.tsv", _pairs(n, seed))
    args = ["train", "--data", str(tmp_path / "c"), "--out", str(tmp_path / "m"), "--device", "cpu"]
    for s in [*SETTINGS, "train.max_steps=20", "train.eval_every=20"]:
        args += ["--set", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "m" / "data.json").read_text())["pairs"]["de-en"]["rows"] == 200
    r = CliRunner().invoke(app, ["evaluate", "--model", str(tmp_path / "m"), "--beam", "1", "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout.splitlines()[-1])
    assert (rec["split"], rec["pair"]) == ("test", "de-en")
    hyps = (tmp_path / "m" / "test.hyp.en").read_text(encoding="utf-8").splitlines()
    refs = [t for _, t in _pairs(12, 13)]
    assert len(hyps) == 12 and rec["bleu"] == round(BLEU().corpus_score(hyps, [refs]).score, 2)  # of what it wrote


def test_a_text_directory_with_other_tables_beside_it_stays_text(tmp_path):
    write_corpus(tmp_path, {"train": 30}, seed=14)
    _tsv(tmp_path / "notes.tsv", _pairs(3, 15))
    read, _ = _train_pairs(tmp_path)
    assert read == _pairs(30, 14)


def test_encoding_in_two_processes_is_cached_as_shards(tmp_path, monkeypatch):
    """A split of more than two map batches is encoded by two processes into shard files; the next run finds them
    (all of them, in order) and gathers the same ids as one process does."""
    import mtx.data.encode as encode_mod

    monkeypatch.setattr(encode_mod, "MAP_BATCH", 40)  # 120 rows: three batches, two processes
    monkeypatch.setattr(encode_mod, "cache_dir", lambda: tmp_path / "two")
    write_corpus(tmp_path / "c", {"train": 120, "val": 10})
    settings = [*SETTINGS, "data.num_proc=2"]
    first = prepare_data(build_config(None, settings), tmp_path / "c")
    shards = sorted(p.name for p in (tmp_path / "two").glob("*_of_00002.arrow"))
    assert first.report["de-en"]["cache"] == "written" and len(shards) == 2, shards
    again = prepare_data(build_config(None, settings), tmp_path / "c", tok=first.tokenizer)
    assert again.report["de-en"]["cache"] == "hit"
    monkeypatch.setattr(encode_mod, "cache_dir", lambda: tmp_path / "one")
    one = prepare_data(build_config(None, [*SETTINGS, "data.num_proc=1"]), tmp_path / "c", tok=first.tokenizer)
    assert one.report["de-en"]["cache"] == "written" and not list((tmp_path / "one").glob("*_of_*.arrow"))
    for data in (again, one):
        for side in ("src", "tgt"):
            want, got = getattr(first.train, side), getattr(data.train, side)
            assert np.array_equal(want.gather(first.train.rows)[0], got.gather(data.train.rows)[0])
