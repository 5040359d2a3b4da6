"""Writes that never lose a user's work, and inputs found by reading that used to crash: each refused in one line,
with nothing lost (issue 22, items 8-18)."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from conftest import TINY_SETTINGS, write_corpus
from typer.testing import CliRunner

import mtx.data.text as text_mod
import mtx.train.loop as loop_mod
import mtx.train.state as state_mod
from mtx import checkpoint
from mtx.cli.main import app
from mtx.config import build_config
from mtx.data.prepare import _sample
from mtx.data.prepare import prepare_data as prepare
from mtx.errors import MtxError
from mtx.train.loop import train


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(r, code: int, *fragments: str) -> str:
    assert r.exit_code == code and "Traceback" not in r.output, r.output
    errors = [x for x in r.stderr.splitlines() if x.startswith("mtx: error: ")]
    assert len(errors) == 1, r.stderr
    assert all(f in errors[0] for f in fragments), errors[0]
    return errors[0]


def files_of(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def model_copy(tiny_model, tmp_path):
    out = tmp_path / "work" / "m"
    shutil.copytree(tiny_model, out)
    return out


# 8. export --force never destroys the model or the working directory


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


# 9. a second training never strands the first one's model


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


# 10-12. states: only state-<digits>; a failed save keeps the last good one; a stop during the final save


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


# 13-14. the tokenizer's sample and the held-out validation set of small corpora


def test_the_tokenizer_sample_never_fails_and_reaches_the_last_rows():
    for n, k in [(510, 500), (250_100, 250_000), (300, 10), (1000, 999)]:  # k just under n failed
        one = _sample(np.random.default_rng(0), n, k)
        assert 0 < len(one) <= k and one.max() < n and (np.diff(one) > 0).all()
    rows = np.concatenate([_sample(np.random.default_rng(seed), 1000, 300) for seed in range(20)])
    assert rows.max() >= 768  # the 232 rows after the last whole block of 256 are drawn too


def test_few_pairs_and_no_validation_split(tmp_path):
    tsv = tmp_path / "c.tsv"
    tsv.write_text("de\ten\n" + "".join(f"Hund {i}.\tDog {i}.\n" for i in range(5)), encoding="utf-8")
    args = ["--set", "data.spm_sample_sentences=1000", "--set", "model.vocab_size=30"]
    r = run(*_train_args(tsv, tmp_path / "m"), *args)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "m" / "data.json").read_text())["pairs"]["de-en"]["valid_held_out"] == 1
    tsv.write_text("de\ten\nHund.\tDog.\n", encoding="utf-8")
    one_line(run(*_train_args(tsv, tmp_path / "m2"), *args), 1, "c.tsv", "at least 2 pairs")
    corpus = write_corpus(tmp_path / "d", {"train": 30})
    (corpus / "val.de").write_text("\n \n", encoding="utf-8")
    (corpus / "val.en").write_text("A.\n\n", encoding="utf-8")
    one_line(run(*_train_args(corpus, tmp_path / "m3")), 1, "val.de", "no pair without an empty side")


# 15-17. a model's config.json and the values a config may hold


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


# 18. a long line is checked in bounded memory


def test_scanning_a_long_line_holds_one_block(tmp_path, monkeypatch):
    monkeypatch.setattr(text_mod, "CHUNK", 64 << 10)
    path = tmp_path / "long.de"
    path.write_bytes(b"Hund " * 1_000_000 + b"\nKatze.\n")  # a 5 MB line
    tracemalloc.start()
    assert text_mod.scan_text(path) == 2
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20  # a few blocks, not the line


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 4 << 20])
def test_scan_names_the_same_line_and_byte_whatever_the_block(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(text_mod, "CHUNK", chunk)
    cases = {
        "ab\nÄÖü\ncd".encode(): 3,
        b"ab\nxy\xe4z\n": "f:2: invalid UTF-8 at byte 2",
        b"ab\nxyz\r\nq\n": 3,
        b"ab\nxyz\rq\n": "f:2: carriage return inside a line",
        "ab\nxä".encode()[:-1]: "f:2: invalid UTF-8 at byte 1",
        b"ab\nxyz\r": 2,
        b"": 0,
    }
    for data, want in cases.items():
        (tmp_path / "f").write_bytes(data)
        try:
            got = text_mod.scan_text(tmp_path / "f")
        except MtxError as e:
            got = str(e).replace(str(tmp_path / "f"), "f")
        assert got == want, (data, got)


def test_an_over_long_line_is_not_encoded_in_full(tmp_path, monkeypatch, logs):
    """A 200,000-character training line: cut where its length alone makes it too long, encoded only that far,
    and dropped as too long; the other lines are encoded whole."""
    import sentencepiece as spm

    corpus = write_corpus(tmp_path / "c", {"train": 40, "val": 5})
    lines = (corpus / "train.de").read_text(encoding="utf-8").splitlines()
    lines[3] = "Hund " * 40_000
    (corpus / "train.de").write_text("\n".join(lines) + "\n", encoding="utf-8")
    longest = []
    real = spm.SentencePieceProcessor.encode

    def spy(self, input, *args, **kwargs):
        if isinstance(input, list):
            longest.append(max(map(len, input)))
        return real(self, input, *args, **kwargs)

    monkeypatch.setattr(spm.SentencePieceProcessor, "encode", spy)
    data = prepare(build_config(None, [*TINY_SETTINGS, "data.max_tokens=64"]), corpus)
    assert max(longest) <= 4 * 32 * 64 < 200_000
    report = data.report["de-en"]
    assert report["too_long"] == 1 and report["kept"] == 39 and any("longer than 64 pieces" in x for x in logs)
