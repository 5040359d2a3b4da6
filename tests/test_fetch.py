"""A fresh machine without ../shared: `mtx train` fetches the default corpus from the hub first; offline, one line
says what to do. The hub is replaced by a local dataset with its columns (train/validation/test, en and de)."""

import datasets
import pytest
from conftest import TINY_SETTINGS
from typer.testing import CliRunner

import mtx.data.multi30k as corpus
from mtx.cli.main import app


@pytest.fixture
def fresh_machine(tmp_path, monkeypatch):
    """The working directory a project's root without ../shared beside it (the corpus is found from there, not
    from where mtx is installed)."""
    monkeypatch.delenv("MTX_DATA", raising=False)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    return tmp_path


def _fake_hub(tiny_corpus, calls):
    real = datasets.load_dataset

    def load_dataset(name, *args, **kwargs):
        if name != corpus.HUB_DATASET:  # local files (the text builder) are read as ever
            return real(name, *args, **kwargs)
        calls.append(name)
        splits = {}
        for hub, ours in corpus.HUB_SPLITS.items():
            de = (tiny_corpus / f"{ours}.de").read_text(encoding="utf-8").splitlines()
            en = (tiny_corpus / f"{ours}.en").read_text(encoding="utf-8").splitlines()
            splits[hub] = datasets.Dataset.from_dict({"en": en, "de": de})
        return datasets.DatasetDict(splits)

    return load_dataset


def test_train_fetches_the_default_corpus_where_it_is_missing(fresh_machine, tiny_corpus, monkeypatch):
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", _fake_hub(tiny_corpus, calls))
    args = ["train", "--out", str(fresh_machine / "m"), "--device", "cpu"]
    for s in [*TINY_SETTINGS, "train.max_steps=5"]:
        args += ["--set", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert calls == [corpus.HUB_DATASET] and "fetching Multi30k from the Hugging Face hub" in r.stderr
    local = fresh_machine / "project" / "data" / "multi30k"
    for split in ("train", "val", "test_2016_flickr"):
        assert (local / f"{split}.de").read_text(encoding="utf-8") == (tiny_corpus / f"{split}.de").read_text(
            encoding="utf-8"
        )
    # the second time, the fetched copy is used
    r = CliRunner().invoke(app, ["evaluate", "--model", str(fresh_machine / "m"), "--device", "cpu"])
    assert r.exit_code == 0 and calls == [corpus.HUB_DATASET], r.output


def test_offline_fresh_machine_says_what_to_do(fresh_machine, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'bentrevett/multi30k' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    r = CliRunner().invoke(app, ["train", "--out", str(fresh_machine / "m")])
    assert r.exit_code == 1 and "Traceback" not in r.output
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("mtx: error: cannot download bentrevett/multi30k from the hub (Couldn't reach")
    assert "offline, put Multi30k's {split}.{lang} files in" in last and "MTX_DATA" in last
