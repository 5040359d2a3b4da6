"""train/state.py on its own, with a small untrained model: what a state folder holds and gives back, which states
are kept, how `latest` is followed, and how a training claims its directory. Fast (no training), so that
`make mutate MODULE=mtx/train/state.py` can run it once per mutant."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import random_model

from mtx.checkpoint import CONFIG, TOKENIZER, WEIGHTS
from mtx.config import TrainConfig
from mtx.errors import MtxError, UsageError
from mtx.train import state as st
from mtx.train.step import make_optimizer

PROTO = b"a tokenizer's bytes"


def _trained_a_little(seed=0, steps=3):
    """A model and its optimizer after a few updates: the optimizer has moments and a step count to save."""
    model = random_model(seed=seed).train()
    opt = make_optimizer(model, TrainConfig(lr=1e-3))
    for _ in range(steps):
        opt.zero_grad()
        sum(p.square().sum() for p in model.parameters()).backward()
        opt.step()
    return model, opt


def test_a_state_restores_weights_moments_and_the_random_stream(tmp_path):
    model, opt = _trained_a_little()
    torch.manual_seed(123)
    extra = {"average.w": torch.arange(4.0)}
    path = st.save_state(tmp_path, model, opt, PROTO, {"step": 7, "epoch": 2}, extra=extra)
    after_save = torch.rand(5)  # what the random stream gives next, from the saved state on
    assert path == tmp_path / "state-7" and (tmp_path / "latest").read_text() == "state-7"

    info, tensors, proto = st.load_state(st.find_state(tmp_path))
    assert proto == PROTO and info["step"] == 7 and info["epoch"] == 2 and info["version"] == st.STATE_VERSION
    assert len(info["param_groups"]) == 2 and "params" not in info["param_groups"][0]
    saved = {k: v for k, v in opt.param_groups[1].items() if k != "params"}
    assert info["param_groups"][1] == json.loads(json.dumps(saved))  # the settings, for the record
    assert torch.equal(tensors["average.w"], extra["average.w"])

    fresh, _ = _trained_a_little(seed=1, steps=0)
    fresh_opt = make_optimizer(fresh, TrainConfig(lr=5e-4, weight_decay=0.3))
    torch.manual_seed(999)
    st.restore(fresh, fresh_opt, info, tensors, "test")
    assert torch.equal(torch.rand(5), after_save)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for p, q in zip(model.parameters(), fresh.parameters(), strict=True):
        saved, got = opt.state[p], fresh_opt.state[q]
        assert saved.keys() == got.keys() and all(torch.equal(saved[k], got[k]) for k in saved)
        assert float(got["step"]) == 3
    # the settings are the current config's, not the saved ones
    assert [g["lr"] for g in fresh_opt.param_groups] == [5e-4, 5e-4]
    assert fresh_opt.param_groups[0]["weight_decay"] == 0.3


def test_restore_refuses_another_number_of_optimizer_groups(tmp_path):
    model, opt = _trained_a_little()
    info, tensors, _ = st.load_state(st.save_state(tmp_path, model, opt, PROTO, {"step": 1}))
    one_group = torch.optim.AdamW(model.parameters())
    with pytest.raises(MtxError, match="from-here: 2 optimizer groups saved, 1 now"):
        st.restore(model, one_group, info, tensors, "from-here")
    one_info, one_tensors, _ = st.load_state(st.save_state(tmp_path, model, one_group, PROTO, {"step": 2}))
    with pytest.raises(MtxError, match="from-here: 1 optimizer groups saved, 2 now"):
        st.restore(model, opt, one_info, one_tensors, "from-here")


def test_only_the_newest_states_are_kept_in_step_order(tmp_path):
    model, opt = _trained_a_little(steps=1)
    for step in (9, 10, 100, 11):  # numeric order, not the names' order: state-100 is the newest step
        st.save_state(tmp_path, model, opt, PROTO, {"step": step}, keep_last=3)
    assert [p.name for p in st.states(tmp_path)] == ["state-10", "state-11", "state-100"]
    assert (tmp_path / "latest").read_text() == "state-11"  # the last saved, whatever its number
    st.save_state(tmp_path, model, opt, PROTO, {"step": 12}, keep_last=1)
    assert [p.name for p in st.states(tmp_path)] == ["state-100"]
    for step in (1, 2, 3):  # keep_last 0: every state stays
        st.save_state(tmp_path, model, opt, PROTO, {"step": step}, keep_last=0)
    assert len(st.states(tmp_path)) == 4
    assert st.states(tmp_path / "none") == []
    (tmp_path / "state-5").write_text("a file, not a folder")
    assert "state-5" not in [p.name for p in st.states(tmp_path)]


def test_find_state_follows_latest_or_takes_a_state_folder(tmp_path):
    model, opt = _trained_a_little(steps=1)
    first = st.save_state(tmp_path, model, opt, PROTO, {"step": 4})
    st.save_state(tmp_path, model, opt, PROTO, {"step": 8})
    assert st.find_state(tmp_path) == tmp_path / "state-8"
    assert st.find_state(first) == first  # a state folder names itself
    assert st.model_dir_of(first) == tmp_path and st.model_dir_of(tmp_path) == tmp_path
    (tmp_path / "latest").write_text("../elsewhere")
    with pytest.raises(MtxError, match="not a state folder"):
        st.find_state(tmp_path)
    (tmp_path / "latest").unlink()
    with pytest.raises(MtxError, match="no 'latest' file"):
        st.find_state(tmp_path)
    with pytest.raises(MtxError, match="directory not found"):
        st.find_state(tmp_path / "none")


def test_unreadable_states_are_one_line_errors(tmp_path):
    model, opt = _trained_a_little(steps=1)
    path = st.save_state(tmp_path, model, opt, PROTO, {"step": 1})
    doc = json.loads((path / "state.json").read_text())
    (path / "state.json").write_text(json.dumps({**doc, "version": st.STATE_VERSION + 1}))
    with pytest.raises(MtxError, match=f"state format {st.STATE_VERSION + 1}, this mtx reads {st.STATE_VERSION}"):
        st.load_state(path)
    (path / "state.json").write_text(json.dumps({**doc, "version": 0}))  # older too: no reader for it
    with pytest.raises(MtxError, match=f"state format 0, this mtx reads {st.STATE_VERSION}"):
        st.load_state(path)
    (path / "state.json").write_text("{not json")
    with pytest.raises(MtxError, match="state.json: unreadable"):
        st.load_state(path)
    (path / "state.json").write_text(json.dumps(doc))
    data = (path / "state.safetensors").read_bytes()
    (path / "state.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(MtxError, match="unreadable or truncated training state") as e:
        st.load_state(path)
    assert "\n" not in str(e.value)


def _model_files(d):
    d.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG, WEIGHTS, TOKENIZER):
        (d / name).write_text("x")


def test_what_counts_as_a_model_directory(tmp_path):
    d = tmp_path / "m"
    _model_files(d)
    assert st.is_model_dir(d)
    for name in (CONFIG, WEIGHTS, TOKENIZER):  # each of the three is needed
        (d / name).unlink()
        assert not st.is_model_dir(d)
        (d / name).write_text("x")
    s = tmp_path / "s"
    (s / "state-3").mkdir(parents=True)
    assert not st.is_model_dir(s)  # states without `latest`
    (s / "latest").write_text("state-3")
    assert st.is_model_dir(s)
    (s / "state-3").rmdir()
    assert not st.is_model_dir(s)  # `latest` without states


def test_claim_holds_a_lock_and_leaves_nothing_when_nothing_was_written(tmp_path):
    out = tmp_path / "new"
    with st.claim(out, None, overwrite=False):
        assert (out / st.LOCK).read_text() == str(os.getpid())
        with st.claim(out, None, overwrite=False):  # this process's own lock is not another training's
            pass
    assert not out.exists()
    with st.claim(out, None, overwrite=False):
        (out / "config.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["config.json"]  # the lock goes, what was written stays
    empty = tmp_path / "empty"
    empty.mkdir()
    with st.claim(empty, None, overwrite=False):
        pass
    assert empty.is_dir()  # a directory it did not create stays


def test_claim_refuses_a_live_lock_but_not_a_stale_one(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    # signals take their default action there (a nohup run would have it ignore SIGHUP)
    child = "import signal, time\nfor s in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:\n"
    child += "    signal.signal(s, signal.SIG_DFL)\nprint('ready', flush=True)\ntime.sleep(60)"
    other = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline() == "ready\n"
    try:
        (out / st.LOCK).write_text(str(other.pid))
        with pytest.raises(UsageError, match=f"another training \\(pid {other.pid}\\)"), st.claim(out, None, False):
            pass
        with pytest.raises(subprocess.TimeoutExpired):  # asked whether it runs, never signalled
            other.wait(timeout=1)
    finally:
        other.kill()
        other.wait()
    for stale in (str(other.pid), "not a pid"):
        (out / st.LOCK).write_text(stale)
        with st.claim(out, None, overwrite=False):
            pass


def test_claim_of_a_taken_directory(tmp_path):
    out = tmp_path / "m"
    _model_files(out)
    (out / "state-3").mkdir()
    (out / "state-3" / "state.json").write_text("{}")
    with pytest.raises(UsageError, match="not empty"), st.claim(out, None, overwrite=False):
        pass
    with st.claim(out, out / "state-3", overwrite=False):  # resuming it, through a state folder of its own
        pass
    with st.claim(out, out, overwrite=False):
        pass
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(UsageError, match="not empty"), st.claim(out, other, overwrite=False):
        pass
    earlier = tmp_path / "a model"  # another directory, whatever its name's order
    earlier.mkdir()
    with pytest.raises(UsageError, match="not empty"), st.claim(out, earlier, overwrite=False):
        pass
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".a").write_text("x")  # any file but the lock makes a directory taken
    with pytest.raises(UsageError, match="not empty"), st.claim(hidden, None, overwrite=False):
        pass
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    (out / "link").symlink_to(outside)
    with st.claim(out, None, overwrite=True):
        assert [p.name for p in out.iterdir()] == [st.LOCK]  # emptied, its files and folders
    assert (outside / "keep").read_text() == "keep"  # a link inside is removed, not followed


def test_overwrite_only_empties_a_real_model_directory(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds no mtx model"), st.claim(notes, None, overwrite=True):
        pass
    assert (notes / "todo.txt").read_text() == "mine"
    real = tmp_path / "real"
    _model_files(real)
    link = tmp_path / "link"
    link.symlink_to(real)
    for overwrite in (False, True):
        with pytest.raises(UsageError, match="symbolic link"), st.claim(link, None, overwrite=overwrite):
            pass
    assert st.is_model_dir(real)


def test_a_failed_save_keeps_the_last_complete_state_and_says_which(tmp_path, monkeypatch):
    model, opt = _trained_a_little(steps=1)
    st.save_state(tmp_path, model, opt, PROTO, {"step": 5})
    before = (tmp_path / "state-5" / "state.safetensors").read_bytes()

    def full_disk(path, tensors):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(st, "atomic_write_tensors", full_disk)
    for step in (6, 5):  # a new step, and the same step again (its folder is kept until the new one is whole)
        with pytest.raises(MtxError) as e:
            st.save_state(tmp_path, model, opt, PROTO, {"step": step})
        assert str(e.value) == (
            f"{tmp_path / f'state-{step}'}: cannot save the training state (No space left on device); "
            "the last complete one: state-5"
        )
        assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "state-5"]  # no half-written folder left
        assert (tmp_path / "state-5" / "state.safetensors").read_bytes() == before
    (tmp_path / "latest").unlink()
    with pytest.raises(MtxError, match="the last complete one: none$"):
        st.save_state(tmp_path, model, opt, PROTO, {"step": 7})


def test_a_state_folder_that_cannot_be_made_is_a_one_line_error(tmp_path):
    model, opt = _trained_a_little(steps=1)
    (tmp_path / "a file").write_text("x")
    with pytest.raises(MtxError, match="cannot save the training state .*the last complete one: none"):
        st.save_state(tmp_path / "a file", model, opt, PROTO, {"step": 1})


def test_the_same_step_saved_again_replaces_its_folder_only_once_the_new_one_is_whole(tmp_path, monkeypatch):
    model, opt = _trained_a_little(steps=1)
    st.save_state(tmp_path, model, opt, PROTO, {"step": 5, "mark": "first"})
    replace = os.replace

    def fail_the_move_into_place(src, dst):
        if Path(src).name.startswith(".state-5.tmp"):  # the new folder, not a file written into it
            raise OSError(5, "Input/output error")
        replace(src, dst)

    monkeypatch.setattr(st.os, "replace", fail_the_move_into_place)
    with pytest.raises(MtxError, match="Input/output error"):
        st.save_state(tmp_path, model, opt, PROTO, {"step": 5, "mark": "second"})
    monkeypatch.setattr(st.os, "replace", replace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "state-5"]
    assert st.load_state(tmp_path / "state-5")[0]["mark"] == "first"
    st.save_state(tmp_path, model, opt, PROTO, {"step": 5, "mark": "second"})
    assert st.load_state(tmp_path / "state-5")[0]["mark"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "state-5"]  # the old folder is gone


def test_a_lock_of_any_other_live_process_is_refused(tmp_path):
    """Whatever its pid, lower or higher than this process's own (here: this process's parent's)."""
    out = tmp_path / "m"
    out.mkdir()
    for pid in (os.getppid(),):
        (out / st.LOCK).write_text(str(pid))
        with pytest.raises(UsageError, match=f"another training \\(pid {pid}\\)"), st.claim(out, None, False):
            pass


def test_defaults_two_states_kept_folders_made_and_the_format_of_earlier_states(tmp_path):
    model, opt = _trained_a_little(steps=1)
    out = tmp_path / "new" / "m"  # made, with its parents, by claim and by save_state alike
    with st.claim(out, None, overwrite=False):
        pass
    for step in (1, 2, 3):
        st.save_state(tmp_path / "saved" / "m", model, opt, PROTO, {"step": step})
    assert [p.name for p in st.states(tmp_path / "saved" / "m")] == ["state-2", "state-3"]
    with st.claim(out, None, overwrite=False):
        assert out.is_dir()
    # states written by earlier releases say version 1: this mtx must still read them
    assert json.loads((tmp_path / "saved" / "m" / "state-3" / "state.json").read_text())["version"] == 1


def test_a_lock_of_another_users_live_process_is_refused(tmp_path, monkeypatch):
    """Signalling another user's process is refused (PermissionError): it runs, so its lock holds."""

    def not_yours(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    out = tmp_path / "m"
    out.mkdir()
    (out / st.LOCK).write_text("4242")
    monkeypatch.setattr(st.os, "kill", not_yours)
    with pytest.raises(UsageError, match="another training \\(pid 4242\\)"), st.claim(out, None, False):
        pass
