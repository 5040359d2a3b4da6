"""Configs: files (TOML, JSON) under --set, damaged or over-nested config.json, values that used to pass, split
names that stay inside the corpus, resuming on other data; each refused in one line."""

import json

import pytest
from conftest import write_corpus
from test_cli import _one_line_error as one_line
from test_cli import run

from mtx import checkpoint
from mtx.config import build_config
from mtx.errors import UsageError


def _edit_config(model_dir, edit):
    doc = json.loads((model_dir / "config.json").read_text())
    edit(doc)
    (model_dir / "config.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "edit, code, words",
    [
        (lambda d: d["config"].update(model=5), 2, "table"),
        (lambda d: d.pop("config"), 1, "no config"),
        (lambda d: d["config"]["model"].update(max_len=2_000_000_000), 2, "model.max_len"),
        (lambda d: d["config"]["data"].update(test_split="../../../tmp/x"), 2, "not a path"),
    ],
    ids=["section-not-a-table", "no-config", "huge-max-len", "split-as-path"],
)
def test_a_damaged_config_is_one_line(model_copy, edit, code, words):
    _edit_config(model_copy, edit)
    one_line(run("translate", "--model", model_copy, "Ein Hund."), code, "config.json", words)


def test_weights_are_checked_against_the_config_before_anything_is_built(model_copy, monkeypatch):
    """A config whose sizes do not fit the weights file: the shapes are compared with the file's header, on a
    model built on the meta device, before a model of the config's size is allocated."""
    built = []
    real = checkpoint.build_model

    def spy(c):
        model = real(c)
        built.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(checkpoint, "build_model", spy)
    _edit_config(model_copy, lambda d: d["config"]["model"].update(d_model=2048, n_heads=8))
    one_line(run("translate", "--model", model_copy, "Ein Hund."), 1, "model.safetensors", "do not match")
    assert built == ["meta"]


def test_a_config_nested_too_deeply_is_one_line(model_copy):
    (model_copy / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    one_line(run("translate", "--model", model_copy, "Ein Hund."), 1, "config.json")


@pytest.mark.parametrize(
    "setting, words",
    [
        ("train.lr=inf", "finite"),
        ("train.weight_decay=inf", "finite"),
        ("decode.max_len_a=inf", "finite"),
        ("train.seed=-1", "must be >= 0"),
        ("train.threads=100000", "must be <="),
        ("data.test_split=../x", "not a path"),
    ],
)
def test_values_that_used_to_pass(setting, words):
    one_line(run("train", "--set", setting), 2, setting.split("=")[0], words)


def test_split_names_and_latest_stay_inside(model_copy, tiny_corpus):
    one_line(run("evaluate", "--model", model_copy, "--data", tiny_corpus, "--split", "../x"), 2, "not a path")
    (model_copy / "latest").write_text("../../elsewhere")
    one_line(run("train", "--resume", model_copy), 1, "not a state folder")


def test_resume_refuses_other_data(model_copy, tiny_corpus, tmp_path):
    other = write_corpus(tmp_path / "other", {"train": 30, "val": 5})
    one_line(run("train", "--resume", model_copy, "--data", other, "--device", "cpu"), 2, "data.path")


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_files(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    if suffix == ".toml":
        path.write_text("[model]\nd_model = 128\nn_heads = 2\n[train]\nlr = 5e-4\nbetas = [0.9, 0.99]\n")
    else:
        path.write_text(
            json.dumps({"model": {"d_model": 128, "n_heads": 2}, "train": {"lr": 5e-4, "betas": [0.9, 0.99]}})
        )
    cfg = build_config(path, ["train.lr=1e-3"])  # the file, then --set
    assert (cfg.model.d_model, cfg.model.n_heads, cfg.train.lr, cfg.train.betas) == (128, 2, 1e-3, (0.9, 0.99))
    path.write_text("[model]\nd_modl = 128\n" if suffix == ".toml" else '{"model": {"d_modl": 128}}')
    with pytest.raises(UsageError, match=f"c{suffix}: unknown config key 'model.d_modl'"):
        build_config(path)


@pytest.mark.parametrize(
    "item, says",
    [("decode.sample=topk=x", "expected topk=K or topp=P"), ("data.pairs=de", "expected SRC-TGT"),
     ("data.path=a,weight=x", "data.path")],
)  # fmt: skip
def test_parsed_keys_refuse_what_does_not_parse(item, says):
    with pytest.raises(UsageError, match=says):
        build_config(None, [item])
    build_config(None, [item.split("=")[0] + "="])  # empty: the default's meaning
