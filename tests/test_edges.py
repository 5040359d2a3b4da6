"""Paths the suite did not exercise (issue 22): over-long inputs, the server's 500, Ctrl-C's exit code, config
files, and re-exporting a CTranslate2 copy older than the weights."""

import json
import os
import shutil
import time

import pytest
import torch
from fakes import FunctionTranslator
from test_serve import Running, _post
from typer.testing import CliRunner

import mtx.decode.translator as translator_mod
from mtx import checkpoint
from mtx.cli.main import app
from mtx.config import DecodeConfig, build_config
from mtx.decode.ct2 import exported_dir
from mtx.decode.translator import Translator
from mtx.errors import UsageError
from mtx.serve.service import Limits, Service


def test_an_over_long_input_is_truncated_with_a_warning(tiny_model, logs, monkeypatch):
    model, tok, cfg, _ = checkpoint.load(tiny_model)
    translator = Translator(model, tok, DecodeConfig(beam=1), torch.device("cpu"))
    lengths = []
    real = translator_mod.search

    def spy(model, src, *args):
        lengths.append(src.shape[1])
        return real(model, src, *args)

    monkeypatch.setattr(translator_mod, "search", spy)
    line = "Ein Hund rennt hier " * 100
    n = len(tok.encode([line])[0])
    assert n > 255
    (out,) = translator.translate([line])
    assert lengths == [256] and out.text  # 255 pieces and EOS
    assert any(f"input line 1 has {n} pieces; truncated to 255" in x for x in logs)


class Failing(FunctionTranslator):
    """Fails its first batch, then translates into upper case."""

    def __init__(self):
        super().__init__(str.upper)
        self.calls = 0

    def decode_ids(self, ids, **options):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("the engine broke")
        return super().decode_ids(ids, **options)


def test_an_engine_error_is_a_500_and_the_server_goes_on(logs):
    with Running(Service(Failing(), [("de", "en")], Limits(wait_ms=1))) as r:
        status, out = _post(r.port, {"q": "ein hund.", "source": "de", "target": "en"})
        assert status == 500 and out["error"].startswith("internal error") and "RuntimeError" in out["error"]
        assert _post(r.port, {"q": "ein hund.", "source": "de", "target": "en"}) == (
            200,
            {"translatedText": "EIN HUND."},
        )
    assert any("the engine broke" in x for x in logs)


def test_ctrl_c_exits_130(monkeypatch, tiny_model):
    import mtx.cli.model as model_cli

    def interrupted(model):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_cli, "describe", interrupted)
    r = CliRunner().invoke(app, ["info", "--model", str(tiny_model)])
    assert r.exit_code == 130 and "mtx: interrupted" in r.stderr


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


def test_a_ctranslate2_copy_older_than_the_weights_is_exported_again(tiny_model, tmp_path, logs):
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model, ignore=shutil.ignore_patterns("ct2"))
    out = exported_dir(model)
    first = (out / "model.bin").stat().st_mtime_ns
    assert exported_dir(model) == out and (out / "model.bin").stat().st_mtime_ns == first  # up to date: kept
    later = time.time() + 5
    os.utime(model / "model.safetensors", (later, later))  # newer weights
    exported_dir(model)
    assert (out / "model.bin").stat().st_mtime_ns != first
    assert sum("exporting" in x for x in logs) == 2
