"""Writes that never lose a user's work: export and --overwrite refuse what is not theirs, two trainings never
share a directory, a failed save keeps the last good state, a stop during the final validation still saves."""

import errno
import os
import signal
import subprocess
import sys

import pytest
from conftest import TINY_SETTINGS
from test_cli import _one_line_error as one_line
from test_cli import run

import mtx.train.loop as loop_mod
import mtx.train.state as state_mod
from mtx import checkpoint
from mtx.config import build_config
from mtx.errors import MtxError
from mtx.train.loop import train


def files_of(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_export_refuses_an_out_that_would_destroy_the_model(model_copy, tmp_path, monkeypatch):
    before = files_of(model_copy)
    for out in (model_copy, model_copy.parent, model_copy / "state-600"):
        one_line(run("export", model_copy, out, "--force"), 2, "model directory")
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    for out in (".", tmp_path / "here"):
        one_line(run("export", model_copy, out, "--force"), 2, "working directory")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    one_line(run("export", model_copy, other, "--force"), 2, "not an earlier export")
    assert files_of(model_copy) == before and (other / "mine.txt").read_text() == "keep me"
    assert run("export", model_copy, tmp_path / "ct2").exit_code == 0
    assert run("export", model_copy, tmp_path / "ct2", "--force").exit_code == 0  # an earlier export: replaced


def _train_args(corpus, out, *extra):
    args = ["train", "--data", corpus, "--out", out, "--device", "cpu", *extra]
    for s in [*TINY_SETTINGS, "train.max_steps=4", "train.eval_every=4", "train.eval_bleu_sents=2"]:
        args += ["--set", s]
    return args


def test_a_new_training_refuses_a_model_directory_unless_told(model_copy, tiny_corpus):
    before = {p: (model_copy / p).read_bytes() for p in ("latest", "train_log.jsonl", "model.safetensors")}
    one_line(run(*_train_args(tiny_corpus, model_copy)), 2, "not empty", "--resume", "--overwrite")
    assert {p: (model_copy / p).read_bytes() for p in before} == before
    r = run(*_train_args(tiny_corpus, model_copy, "--overwrite"))
    assert r.exit_code == 0, r.output
    assert state_mod.find_state(model_copy).name == "state-4" and [p.name for p in state_mod.states(model_copy)] == [
        "state-4"
    ]
    assert not (model_copy / ".lock").exists()


def test_overwrite_leaves_alone_what_is_not_a_model(tiny_corpus, tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    one_line(run(*_train_args(tiny_corpus, other, "--overwrite")), 2, "holds no mtx model")
    assert (other / "mine.txt").read_text() == "keep me"


def test_overwrite_never_empties_a_link_a_look_alike_or_before_the_data_is_checked(model_copy, tiny_corpus, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "mine.txt").write_text("keep me")
    link = tmp_path / "out"
    link.symlink_to(victim)
    one_line(run(*_train_args(tiny_corpus, link, "--overwrite")), 2, "symbolic link")
    like = tmp_path / "project"
    (like / "src").mkdir(parents=True)
    (like / "config.json").write_text("{}")
    (like / "src" / "main.py").write_text("print(1)")
    one_line(run(*_train_args(tiny_corpus, like, "--overwrite")), 2, "holds no mtx model")
    before = files_of(model_copy)
    one_line(run(*_train_args(tmp_path / "nonexistent", model_copy, "--overwrite")), 1, "data not found")
    assert files_of(model_copy) == before
    assert (victim / "mine.txt").read_text() == "keep me" and (like / "src" / "main.py").is_file()


def test_export_onto_a_link_or_a_file_is_one_line(model_copy, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    afile = tmp_path / "a.txt"
    afile.write_text("keep me")
    for fmt in ("ct2", "argos"):
        one_line(run("export", "--format", fmt, model_copy, link, "--force"), 2, "symbolic link")
    one_line(run("export", model_copy, afile, "--force"), 2, "not a directory")
    assert afile.read_text() == "keep me" and not any((tmp_path / "elsewhere").iterdir())


def test_two_trainings_never_share_a_directory(tiny_corpus, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(str(other.pid))
        one_line(run(*_train_args(tiny_corpus, out)), 2, "another training", str(other.pid))
    finally:
        other.kill()
        other.wait()
    r = run(*_train_args(tiny_corpus, out))  # the lock of a process that is gone is stale
    assert r.exit_code == 0, r.output


def test_only_state_folders_are_states(model_copy):
    for name in ("state-2.bak", "state-1-old"):
        (model_copy / name).mkdir()
    state_mod.save_state(model_copy, *_state_parts(model_copy), {"step": 900}, keep_last=1)
    names = sorted(p.name for p in model_copy.iterdir() if p.name.startswith("state"))
    assert names == ["state-1-old", "state-2.bak", "state-900"]
    (model_copy / "latest").write_text("state-2.bak")  # not a state: refused, not followed
    with pytest.raises(MtxError, match="not a state folder"):
        state_mod.find_state(model_copy)


def _state_parts(model_dir):
    """A model and an optimizer to save, and the tokenizer's bytes, from a model directory."""
    from mtx.train.step import make_optimizer

    model, tok, cfg, _ = checkpoint.load(model_dir)
    return model, make_optimizer(model, cfg.train), tok.proto


def test_a_save_that_fails_keeps_the_last_good_state(model_copy, monkeypatch):
    parts, good = _state_parts(model_copy), state_mod.find_state(model_copy)
    real = state_mod.atomic_write

    def disk_full(path, data):
        if path.name == "state.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(state_mod, "atomic_write", disk_full)
    for step in (900, int(good.name.split("-")[1])):  # a new step, and the same step again
        with pytest.raises(MtxError, match="No space left on device") as e:
            state_mod.save_state(model_copy, *parts, {"step": step})
        assert "\n" not in str(e.value) and good.name in str(e.value)
        assert state_mod.find_state(model_copy) == good and state_mod.load_state(good)[0]["step"] > 0
        assert not [p for p in model_copy.iterdir() if p.name.startswith(".state-")]  # no temporary left


def test_resaving_a_step_replaces_it_only_once_the_new_one_is_complete(model_copy, monkeypatch):
    parts, good = _state_parts(model_copy), state_mod.find_state(model_copy)
    step = int(good.name.split("-")[1])
    real = os.replace

    def fail_into_place(src, dst):
        if str(dst).endswith(good.name) and ".tmp" in str(src):
            raise OSError(errno.EIO, "I/O error")
        return real(src, dst)

    monkeypatch.setattr(state_mod.os, "replace", fail_into_place)
    with pytest.raises(MtxError, match="I/O error"):
        state_mod.save_state(model_copy, *parts, {"step": step})
    assert state_mod.load_state(state_mod.find_state(model_copy))[0]["step"] == step


def test_a_stop_during_the_final_validation_still_saves(tiny_corpus, tmp_path, monkeypatch):
    """Ctrl-C while the final validation runs: the validation left is skipped, the state is saved, no crash."""
    real = loop_mod.Trainer.validate_and_save

    def interrupted(self, budget, averaged=0):
        if self.pos.step == 8:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends
        return real(self, budget, averaged)

    monkeypatch.setattr(loop_mod.Trainer, "validate_and_save", interrupted)
    cfg = build_config(None, [*TINY_SETTINGS, "train.max_steps=8", "train.eval_every=100", "train.average=2"])
    summary = train(cfg, tiny_corpus, tmp_path / "m")
    assert summary["steps"] == 8 and state_mod.find_state(tmp_path / "m").name == "state-8"
    assert all("averaged" not in r for r in summary["history"])  # skipped once the stop was asked
