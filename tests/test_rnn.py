"""The RNN baseline end to end, through the same CLI and training loop as the Transformer: it trains to fit the
tiny corpus, translates with beam search, evaluates, resumes exactly and is described by `mtx info`."""

import json

import pytest
from conftest import TINY_SETTINGS
from typer.testing import CliRunner

from mtx import checkpoint
from mtx.cli.main import app
from mtx.config import Config, build_config
from mtx.models.rnn import RNNSeq2Seq
from mtx.train.loop import train
from mtx.train.presets import configure
from mtx.train.state import find_state, load_state

RNN = ["model.arch=rnn", "model.d_model=64", "model.enc_layers=1", "model.dec_layers=1"]


@pytest.fixture(scope="module")
def rnn_model(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("rnn") / "m"
    args = ["train", "--data", str(tiny_corpus), "--out", str(out), "--device", "cpu"]
    for s in [*TINY_SETTINGS, *RNN, "train.max_steps=400", "train.eval_every=200"]:
        args += ["--set", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return out


def test_rnn_trains_translates_and_evaluates(rnn_model, tiny_corpus):
    model, _, cfg, _ = checkpoint.load(rnn_model)
    assert isinstance(model, RNNSeq2Seq) and cfg.model.arch == "rnn"
    src = (tiny_corpus / "train.de").read_text(encoding="utf-8").splitlines()[50:60]
    ref = (tiny_corpus / "train.en").read_text(encoding="utf-8").splitlines()[50:60]
    r = CliRunner().invoke(app, ["translate", "--model", str(rnn_model), "--beam", "3", *src])
    assert r.exit_code == 0, r.output
    right = sum(a == b for a, b in zip(r.stdout.splitlines(), ref, strict=True))
    assert right >= 8, (r.stdout, ref)
    r = CliRunner().invoke(app, ["evaluate", "--model", str(rnn_model), "--data", str(tiny_corpus), "--beam", "4"])
    assert r.exit_code == 0, r.output
    bleu = float(r.stdout.split("BLEU = ")[1].split()[0])
    assert bleu > 80, r.stdout


def test_rnn_info_sums_to_the_model(rnn_model):
    r = CliRunner().invoke(app, ["info", "--model", str(rnn_model), "--json"])
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)["parameters"]
    model, *_ = checkpoint.load(rnn_model)
    assert p["total"] == sum(x.numel() for x in model.parameters()) == sum(x["count"] for x in p["by_component"])
    assert p["arch"] == "rnn (gru)"
    names = [x["name"] for x in p["by_component"]]
    assert "encoder 0: bidirectional GRU" in names and "decoder 0: GRU" in names


def test_rnn_interrupt_and_resume_equals_straight_run(tiny_corpus, tmp_path):
    def cfg():
        return build_config(None, [*TINY_SETTINGS, *RNN, "train.max_steps=30", "train.eval_every=20",
                                   "train.save_every=0", "model.dropout=0.1", "model.rnn_cell=lstm"])  # fmt: skip

    straight, parted = tmp_path / "straight", tmp_path / "parted"
    train(cfg(), tiny_corpus, straight)
    first = train(cfg(), tiny_corpus, parted, should_stop=lambda step: step == 13)
    assert first["stop"] == "interrupted" and first["steps"] == 13
    info, _, _ = load_state(find_state(parted))
    resumed = train(Config.from_dict(info["config"]), tiny_corpus, parted, resume=parted)
    assert resumed["steps"] == 30
    a, b = (load_state(find_state(d))[1] for d in (straight, parted))
    params = [k for k in a if k.startswith("model.")]
    assert len(params) > 8
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in params) == 0.0


def test_rnn_preset_applies_under_overrides():
    """`--set model.arch=rnn` starts from the RNN's preset; other overrides still win."""
    cfg = configure(None, ["model.arch=rnn", "model.enc_layers=2"], "cpu")
    assert cfg.model.arch == "rnn" and cfg.model.enc_layers == 2 and cfg.model.d_model == 512
    assert configure(None, [], "cpu").model.arch == "transformer"


def test_export_refuses_the_rnn(rnn_model, tmp_path):
    pytest.importorskip("ctranslate2")
    r = CliRunner().invoke(app, ["export", str(rnn_model), str(tmp_path / "x")])
    assert r.exit_code == 2 and "model.arch=rnn; CTranslate2 runs Transformers" in r.stderr
    assert not (tmp_path / "x").exists()
