"""Training curves: the log holds training and validation records; curves.png is drawn; `mtx plot` overlays runs."""

import struct

from typer.testing import CliRunner

from mtx.cli import app
from mtx.plots import read_log


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_training_writes_its_curves(tiny_model):
    train, valid = read_log(tiny_model)
    assert [r["step"] for r in train] == list(range(50, 601, 50))  # every log step (log_every 50)
    assert all(r["lr"] > 0 and r["train_loss"] >= 0 for r in train) and train[-1]["train_loss"] < train[0]["train_loss"]
    assert [r["step"] for r in valid] == [300, 600]
    assert _png_size(tiny_model / "curves.png") == (990, 630)  # 11 x 7 inches at 90 dpi


def test_plot_overlays_runs(tiny_model, tmp_path):
    out = tmp_path / "both.png"
    r = CliRunner().invoke(app, ["plot", str(tiny_model), str(tiny_model / "train_log.jsonl"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert _png_size(out) == (990, 630)
    r = CliRunner().invoke(app, ["plot", str(tiny_model), "-o", str(out), "--x", "minutes"])
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "train_loss": 2.0}\nnot json\n')
    r = CliRunner().invoke(app, ["plot", str(bad), "-o", str(out)])
    assert r.exit_code == 1 and "bad.jsonl:2: not a JSON line" in r.stderr
