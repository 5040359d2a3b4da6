"""Weight averaging over the end of training: the running mean, its schedule, and its use by `train`."""

import pytest
import torch
from conftest import TINY_SETTINGS, random_model

from mtx import checkpoint
from mtx.config import build_config
from mtx.errors import UsageError
from mtx.train.averaging import WeightAverage
from mtx.train.loop import train
from mtx.train.plots import read_log


def test_running_mean_equals_the_mean_of_snapshots():
    model = random_model()
    avg = WeightAverage(model, snapshots=3, frac=0.5)
    seen = []
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        seen.append([p.detach().clone() for p in model.parameters()])
        avg.add(step)
    own = [p.detach().clone() for p in model.parameters()]
    with avg.applied():
        for p, *snaps in zip(model.parameters(), *seen, strict=True):
            torch.testing.assert_close(p, torch.stack(snaps).mean(0))
    for p, o in zip(model.parameters(), own, strict=True):
        assert torch.equal(p, o), "the model's own weights come back after `applied`"


def test_snapshots_are_evenly_spaced_over_the_last_fraction():
    avg = WeightAverage(random_model(), snapshots=4, frac=0.5)
    taken = []
    for i in range(100):
        if avg.due(i / 100):
            avg.add(i)
            taken.append(i)
    assert taken == [50, 63, 75, 88]  # progress 0.5, 0.625, 0.75, 0.875


def test_bad_settings_are_usage_errors():
    with pytest.raises(UsageError, match=r"train.average_frac=0.0: must be in \(0, 1\]"):
        build_config(None, ["train.average=2", "train.average_frac=0"])
    with pytest.raises(UsageError, match="train.average=-1: must be >= 0"):
        build_config(None, ["train.average=-1"])


def test_train_validates_the_average_and_keeps_the_better(tiny_corpus, tmp_path):
    extra = ["train.max_steps=60", "train.eval_every=1000", "train.average=3", "train.average_frac=0.5"]
    cfg = build_config(None, [*TINY_SETTINGS, *extra])
    result = train(cfg, tiny_corpus, tmp_path / "m")
    raw, averaged = result["history"][-2:]
    assert "averaged" not in raw and averaged["averaged"] == 4  # 3 snapshots and the final weights
    assert raw["step"] == averaged["step"] == 60
    meta = checkpoint.load(tmp_path / "m")[3]
    kept = averaged if averaged["best"] else raw
    assert meta.get("averaged") == kept.get("averaged") and meta["valid_bleu"] == kept["valid_bleu"]
    log = read_log(tmp_path / "m")[1]  # the validations
    assert log[-1]["averaged"] == 4


def test_a_finished_run_resumed_to_train_longer_averages_anew(tiny_corpus, tmp_path):
    out = tmp_path / "m"
    sets = [*TINY_SETTINGS, "train.eval_every=1000", "train.average=2", "train.average_frac=0.5"]
    first = train(build_config(None, [*sets, "train.max_steps=20"]), tiny_corpus, out)
    assert first["history"][-1]["averaged"] == 3  # steps 11 and 16, and the final weights
    more = build_config(None, [*sets, "train.max_steps=40"])
    second = train(more, tiny_corpus, out, resume=out)
    assert second["history"][-1]["averaged"] == 3  # steps 21 and 31, and the final weights: none from the first run
