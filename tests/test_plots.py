"""Training curves: the log holds training and validation records; curves.png is drawn; `mtx plot` overlays runs."""

import struct

import pytest
from typer.testing import CliRunner

from mtx.cli.main import app
from mtx.train.plots import read_log


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


def test_plot_overlays_runs(tiny_model, tmp_path, monkeypatch):
    """Each run's every series is drawn from its log (x in steps, or in minutes of training), two runs overlaid
    in their own colours."""
    from matplotlib.axes import Axes

    drawn = []
    real = Axes.plot

    def spy(self, xs, ys, *args, **kwargs):
        drawn.append((self.get_title() or None, list(xs), list(ys), kwargs["label"], kwargs["color"]))
        return real(self, xs, ys, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    out = tmp_path / "both.png"
    r = CliRunner().invoke(app, ["plot", str(tiny_model), str(tiny_model / "train_log.jsonl"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert _png_size(out) == (990, 630)
    train, valid = read_log(tiny_model)
    assert len(drawn) == 2 * 5  # training and validation loss, BLEU, learning rate, tokens/s; for each run
    assert {d[4] for d in drawn[:5]} == {"C0"} and {d[4] for d in drawn[5:]} == {"C1"}
    by_label = {d[3]: d for d in drawn}
    assert by_label["m: training"][1:3] == ([r["step"] for r in train], [r["train_loss"] for r in train])
    assert by_label["m: validation"][2] == [r["valid_loss"] for r in valid]
    drawn.clear()
    r = CliRunner().invoke(app, ["plot", str(tiny_model), "-o", str(out), "--x", "minutes"])
    assert r.exit_code == 0, r.output
    assert drawn[0][3] == "training" and drawn[0][1] == pytest.approx([r["train_s"] / 60 for r in train])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "train_loss": 2.0}\nnot json\n')
    r = CliRunner().invoke(app, ["plot", str(bad), "-o", str(out)])
    assert r.exit_code == 1 and "bad.jsonl:2: not a JSON line" in r.stderr


def test_tensorboard_without_the_package_is_a_one_line_error_before_the_data(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        import pytest

        pytest.skip("tensorboard is installed here")
    r = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "none"), "--set", "train.tensorboard=true"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.strip().endswith("train.tensorboard=true needs the tensorboard package (pip install tensorboard)")


def test_tensorboard_gets_the_log_records(tiny_corpus, tmp_path, monkeypatch):
    """With a stand-in SummaryWriter (tensorboard is optional): every numeric field of every record, by step."""
    from conftest import TINY_SETTINGS

    from mtx.config import build_config
    from mtx.train.loop import train
    from mtx.train.plots import TensorBoardLog

    scalars = []

    class Writer:
        def __init__(self, logdir):
            self.logdir = logdir

        def add_scalar(self, tag, value, step):
            scalars.append((tag, step))

        def flush(self):
            pass

    monkeypatch.setattr(TensorBoardLog, "writer_class", staticmethod(lambda: Writer))
    cfg = build_config(None, [*TINY_SETTINGS, "train.tensorboard=true", "train.max_steps=20", "train.log_every=10"])
    cfg.train.eval_every = 20
    train(cfg, tiny_corpus, tmp_path / "m")
    assert ("train/train_loss", 10) in scalars and ("train/lr", 20) in scalars
    assert ("valid/valid_loss", 20) in scalars and ("valid/valid_bleu", 20) in scalars


def test_training_goes_on_without_matplotlib(tiny_corpus, tmp_path, monkeypatch, logs):
    """A bare GPU machine may lack matplotlib: the curves are skipped with one line, training is unaffected."""
    import builtins

    from conftest import TINY_SETTINGS

    from mtx.config import build_config
    from mtx.train.loop import train

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    cfg = build_config(None, [*TINY_SETTINGS, "train.max_steps=20", "train.eval_every=10"])
    result = train(cfg, tiny_corpus, tmp_path / "m")
    assert result["steps"] == 20, (result, logs)
    assert not (tmp_path / "m" / "curves.png").exists()
    assert sum("curves.png skipped" in x for x in logs) == 1
