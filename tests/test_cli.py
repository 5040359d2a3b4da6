"""The three commands end to end through CliRunner on a tiny corpus, and user errors as one-line messages."""

import hashlib
import json
import re

import numpy as np
import pytest
from conftest import TINY_SETTINGS as TINY_SETTINGS_FOR_CLI
from typer.testing import CliRunner

from mtx.cli.main import app
from mtx.train.plots import read_log


def run(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def _one_line_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    errors = [x for x in result.stderr.splitlines() if x.startswith("mtx: error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    for f in fragments:
        assert f in errors[0]
    return errors[0]


def test_trained_model_fits_tiny_corpus(tiny_model, tiny_corpus):
    """The tiny model overfits its corpus: it translates training sentences exactly."""
    log = read_log(tiny_model)[1]  # the validations
    assert log[-1]["valid_bleu"] == pytest.approx(100.0)
    src = (tiny_corpus / "train.de").read_text(encoding="utf-8").splitlines()[50:60]
    ref = (tiny_corpus / "train.en").read_text(encoding="utf-8").splitlines()[50:60]
    result = run("translate", "--model", tiny_model, "--beam", 3, *src)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ref


def _train_pairs(corpus, n=3):
    src = (corpus / "train.de").read_text(encoding="utf-8").splitlines()
    ref = (corpus / "train.en").read_text(encoding="utf-8").splitlines()
    return src[-n:], ref[-n:]


def test_translate_stdin_keeps_empty_lines_and_order(tiny_model, tiny_corpus):
    (a, b, c), (ra, rb, rc) = _train_pairs(tiny_corpus)
    result = run("translate", "--model", tiny_model, input=f"{a}\n\n{b}\n{c}\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\n") == [ra, "", rb, rc, ""]


def test_translate_file_nbest_and_json(tiny_model, tiny_corpus, tmp_path):
    (a, b, _), (ra, rb, _) = _train_pairs(tiny_corpus)
    f = tmp_path / "in.de"
    f.write_text(f"{a}\n{b}\n", encoding="utf-8")
    result = run("translate", "--model", tiny_model, "--input", f, "--nbest", 3)
    assert result.exit_code == 0, result.output
    rows = [r.split("\t") for r in result.stdout.splitlines()]
    assert len(rows) == 2 and all(len(r) == 6 for r in rows)
    assert rows[0][0] == ra and rows[1][0] == rb
    scores = [float(x) for x in rows[0][1::2]]
    assert scores == sorted(scores, reverse=True)
    result = run("translate", "--model", tiny_model, "--json", "--nbest", 2, a)
    rec = json.loads(result.stdout)
    assert rec["translation"] == ra and len(rec["nbest"]) == 2
    # the length penalty divides the log-probability by ((5 + len) / 6) ** alpha: alpha 0 leaves it raw
    raw = json.loads(run("translate", "--model", tiny_model, "--json", "--alpha", 0, a).stdout)["nbest"][0]["score"]
    assert raw < rec["nbest"][0]["score"] < 0
    # one score definition for every beam size: greedy finds the same translation and gives it the same score
    greedy = json.loads(run("translate", "--model", tiny_model, "--json", "--beam", 1, a).stdout)["nbest"][0]
    assert greedy["text"] == ra and greedy["score"] == pytest.approx(rec["nbest"][0]["score"], abs=2e-4)
    greedy_raw = json.loads(run("translate", "--model", tiny_model, "--json", "--beam", 1, "--alpha", 0, a).stdout)
    assert greedy_raw["nbest"][0]["score"] == pytest.approx(raw, abs=2e-4)


def test_nbest_over_the_beam_raises_the_beam(tiny_model, tiny_corpus):
    a = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[0]
    result = run("translate", "--model", tiny_model, "--json", "--beam", 2, "--nbest", 4, a)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["nbest"]) == 4


def test_nbest_on_an_empty_line_prints_k_candidates(tiny_model, tiny_corpus):
    (a, _, _), _ = _train_pairs(tiny_corpus)
    result = run("translate", "--model", tiny_model, "--nbest", 3, input=f"\n{a}\n")
    assert result.exit_code == 0, result.output
    empty, full = result.stdout.split("\n")[:2]
    assert empty.split("\t") == ["", "0.0000"] * 3 and len(full.split("\t")) == 6


def test_evaluate_prints_scores_and_writes_hypotheses(tiny_model, tiny_corpus, tmp_path):
    out = tmp_path / "hyp.en"
    result = run("evaluate", "--model", tiny_model, "--data", tiny_corpus, "--beam", 2, "--output", out)
    assert result.exit_code == 0, result.output
    assert "BLEU = 100.00" in result.stdout
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in result.stdout
    assert "chrF2 = 100.00" in result.stdout and "sent/s" in result.stdout
    assert "beam 2, alpha 1.0, no repeated 4-gram, cpu:" in result.stdout  # the rules in force
    ref = (tiny_corpus / "test_2016_flickr.en").read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8") == ref
    result = run(
        "evaluate", "--model", tiny_model, "--src-file", tiny_corpus / "val.de", "--ref-file", tiny_corpus / "val.en",
        "--no-repeat-ngram", 0, "--repetition-penalty", 0.9,
    )  # fmt: skip
    assert result.exit_code == 0 and "BLEU = 100.00" in result.stdout
    assert "alpha 1.0, repetition penalty 0.9, cpu:" in result.stdout


def test_error_missing_model_directory(tmp_path):
    _one_line_error(run("translate", "--model", tmp_path / "none", "Hallo"), 2, "model directory not found")


def test_error_misaligned_corpus(tiny_model, tmp_path):
    (tmp_path / "s.de").write_text("Ein hund.\nEin mann.\n", encoding="utf-8")
    (tmp_path / "r.en").write_text("A dog.\n", encoding="utf-8")
    r = run("evaluate", "--model", tiny_model, "--src-file", tmp_path / "s.de", "--ref-file", tmp_path / "r.en")
    _one_line_error(r, 1, "s.de:2: files are not aligned")


def test_error_missing_file_and_non_utf8(tiny_model, tiny_corpus, tmp_path):
    _one_line_error(run("translate", "--model", tiny_model, "--input", tmp_path / "x.de"), 1, "x.de: file not found")
    bad = tmp_path / "bad.de"
    bad.write_bytes(b"Ein hund.\nKatze \xe4 rot.\n")
    _one_line_error(run("translate", "--model", tiny_model, "--input", bad), 1, "bad.de:2: invalid UTF-8")
    r = run("evaluate", "--model", tiny_model, "--data", tmp_path, "--split", "test")
    _one_line_error(r, 1, "test.de: file not found")


def test_error_train_data_problems(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "train.de").write_text("Ein hund.\nZwei.\n", encoding="utf-8")
    (d / "train.en").write_bytes(b"A dog.\n\xff\n")
    _one_line_error(run("train", "--data", d, "--out", tmp_path / "m"), 1, "train.en:2: invalid UTF-8")
    _one_line_error(run("train", "--data", tmp_path / "nope", "--out", tmp_path / "m"), 1, "data not found")
    _one_line_error(run("train", "--data", d, "--set", "model.dmodel=3"), 2, "unknown config key 'model.dmodel'")


def test_error_invalid_option_values(tiny_model):
    _one_line_error(run("translate", "--model", tiny_model, "--beam", -1, "Hallo"), 2, "decode.beam=-1 (--beam)")
    _one_line_error(run("translate", "--model", tiny_model, "--device", "tpu", "Hallo"), 2, "--device 'tpu'")
    r = run("evaluate", "--model", tiny_model, "--alpha", -1)
    _one_line_error(r, 2, "decode.alpha=-1.0 (--alpha): expected a length penalty between 0 and 10")


def test_error_train_option_values(tmp_path):
    _one_line_error(run("train", "--time-budget", -1), 2, "train.time_budget_min=-1.0 (--time-budget): must be >= 0")
    _one_line_error(run("train", "--resume", tmp_path / "none"), 1, "nothing to resume")
    _one_line_error(run("train", "--set", "train.lr=fast"), 2, "train.lr='fast' is not a valid float")


@pytest.mark.parametrize(
    "setting, message",
    [
        ("train.schedule=step", "train.schedule='step': expected cosine, inv_sqrt, linear or constant"),
        ("data.max_tokens=300", "data.max_tokens=300: must be <= model.max_len"),
        ("decode.alpha=-1", "decode.alpha=-1.0 (--alpha): expected a length penalty between 0 and 10"),
        ("model.n_heads=3", "model.d_model=256: must be a multiple of model.n_heads"),
    ],
)
def test_config_errors_come_before_any_data_is_read(tmp_path, setting, message):
    """The data directory does not exist: a config error must be reported first, as a usage error."""
    r = run("train", "--data", tmp_path / "none", "--out", tmp_path / "m", "--set", setting)
    _one_line_error(r, 2, message)
    assert not (tmp_path / "m").exists()


def test_error_damaged_model(tiny_model, tmp_path):
    import shutil

    damaged = tmp_path / "m"
    shutil.copytree(tiny_model, damaged)
    (damaged / "model.safetensors").write_bytes((tiny_model / "model.safetensors").read_bytes()[:500])
    _one_line_error(run("translate", "--model", damaged, "Hallo"), 1, "model.safetensors: unreadable or truncated")


def test_bench_decode_cache_matches_full_recompute(tiny_model, tiny_corpus):
    r = run("bench", "decode", "--model", tiny_model, "--data", tiny_corpus, "--beam", 3, "--device", "cpu")
    assert r.exit_code == 0, r.output
    recs = {x["setting"]: x for x in map(json.loads, r.stdout.splitlines())}
    assert set(recs) == {"greedy", "beam", "beam_nocache"}
    assert recs["beam"]["outputs_sha1"] == recs["beam_nocache"]["outputs_sha1"]  # the same translations
    hyps = run("translate", "--model", tiny_model, "--beam", 3, "--input", tiny_corpus / "test_2016_flickr.de")
    assert recs["beam"]["outputs_sha1"] == hashlib.sha1(hyps.stdout.encode()).hexdigest()
    assert all(x["sents_per_s"] > 0 and x["sentences"] == 20 for x in recs.values())


def test_bench_train_prints_throughput(tiny_corpus):
    from conftest import TINY_SETTINGS

    args = ["bench", "train", "--data", tiny_corpus, "--device", "cpu", "--steps", 4, "--warmup", 1]
    for s in TINY_SETTINGS:
        args += ["--set", s]
    r = run(*args)
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    # The tokens it counts are those of the timed batches: epoch 0's batches from the second on, cycled.
    from mtx.config import build_config
    from mtx.data.prepare import prepare_data

    # (the batches' rows from the data path; their tokens counted here from the text, with EOS on each side)
    data = prepare_data(build_config(None, TINY_SETTINGS), tiny_corpus)
    epoch = data.train.epoch(0)
    de, en = ((tiny_corpus / f"train.{x}").read_text(encoding="utf-8").splitlines() for x in ("de", "en"))
    sp = data.tokenizer.sp
    real = padded = 0
    for i in range(1, 5):
        rows = data.train.rows[np.asarray(epoch[i % len(epoch)])]
        src = [len(sp.encode(de[r].strip())) + 1 for r in rows]
        tgt = [len(sp.encode(en[r].strip())) + 1 for r in rows]
        real += sum(src) + sum(tgt)
        padded += len(rows) * (max(src) + max(tgt))
    assert rec["steps"] == 4 and rec["tokens"] == real and rec["mfu"] is None
    assert rec["padding_fraction"] == pytest.approx(1 - real / padded, abs=1e-4)
    assert rec["warmup"] == 1
    without = [a for i, a in enumerate(args) if a != "--warmup" and args[i - 1] != "--warmup"]
    default = run(*without)  # without --warmup: 10 untimed steps on a CPU (one epoch on CUDA)
    assert default.exit_code == 0 and json.loads(default.stdout)["warmup"] == 10, default.output


def test_the_gpu_preset_stops_on_its_time_budget_not_its_epochs():
    """On an H200 the GPU preset trains about 200 epochs of Multi30k in 4.5 minutes (docs/gpu.md): its epoch limit
    must stay above what its time budget holds, and the CPU preset's too (about 1.5 epochs in 15 minutes)."""
    from mtx.train.presets import preset

    gpu, cpu = preset("cuda"), preset("cpu")
    assert gpu.train.max_epochs >= 207 * gpu.train.time_budget_min / 4.5
    assert cpu.train.max_epochs >= 2 and cpu.train.time_budget_min == 15.0


def test_evaluate_ci_and_compare(tiny_model, tiny_corpus, tmp_path):
    r = run("evaluate", "--model", tiny_model, "--data", tiny_corpus, "--ci", "--output", tmp_path / "h")
    assert r.exit_code == 0, r.output
    assert "BLEU = 100.00, 95% interval 100.00 ± 0.00 (bootstrap, 1000)" in r.stdout
    # against itself: identical outputs, no difference
    r = run(
        "evaluate", "--model", tiny_model, "--data", tiny_corpus, "--compare", tiny_model, "--output", tmp_path / "h"
    )
    assert r.exit_code == 0, r.output
    assert "no significant difference" in r.stdout and "1.0000  1.0000" in r.stdout
    # against a model trained for 40 steps only: both scores, intervals and p-values
    weak = tmp_path / "weak"
    args = ["train", "--data", tiny_corpus, "--out", weak, "--device", "cpu"]
    for s in [*TINY_SETTINGS_FOR_CLI, "train.max_steps=40", "train.eval_every=40"]:
        args += ["--set", s]
    assert run(*args).exit_code == 0
    r = run("evaluate", "--model", tiny_model, "--data", tiny_corpus, "--compare", weak, "--output", tmp_path / "h")
    assert r.exit_code == 0, r.output
    rows = [x.split() for x in r.stdout.splitlines() if x.split()[:2] in (["BLEU", "baseline"], ["BLEU", "system"])]
    (_, _, base, *_), (_, _, system, _, _, _, p_bs, p_ar) = rows[0], rows[1]
    assert float(system) == 100.0 > float(base) + 10 and float(p_bs) < 0.05 and float(p_ar) < 0.05
    assert "BLEU: a significant difference" in r.stdout and (weak / "test_2016_flickr.hyp.en").is_file()
    # the weak model's interval: around its score, and of some width
    r = run("evaluate", "--model", weak, "--data", tiny_corpus, "--ci", "--output", tmp_path / "w")
    line = next(x for x in r.stdout.splitlines() if x.startswith("BLEU = ") and "interval" in x)
    score, mean, ci = (float(v) for v in re.findall(r"[0-9]+\.[0-9]+", line)[:3])
    assert ci > 0 and abs(mean - score) <= ci and score == float(base)


def test_compare_refuses_another_language_pair(tiny_model, tmp_path):
    import shutil

    other = tmp_path / "fr"
    shutil.copytree(tiny_model, other)
    doc = json.loads((other / "config.json").read_text())
    doc["config"]["data"]["src"] = "fr"
    (other / "config.json").write_text(json.dumps(doc))
    r = run("evaluate", "--model", tiny_model, "--compare", other, "--src-file", "x", "--ref-file", "y")
    _one_line_error(r, 2, "translates fr-en, --model", "translates de-en")


def test_each_key_declares_its_option_and_resume_rule():
    """A config key is declared once: its rules, its command-line option (named in its errors) and whether a
    resumed training may change it come with its field."""
    from mtx.config import Config, build_config, frozen_on_resume
    from mtx.errors import UsageError

    keys = Config().keys()
    frozen = {name for name, _, f in keys if frozen_on_resume(name, f)}
    model_and_data = {name for name, _, _ in keys if name.startswith(("model.", "data."))}
    assert frozen == model_and_data - {"data.test_split", "data.num_proc"} | {
        "train.seed",
        "train.batch_tokens",
        "train.init",
    }
    flags = {name: f.metadata["flag"] for name, _, f in keys if f.metadata["flag"]}
    assert flags["decode.beam"] == "--beam" and flags["train.time_budget_min"] == "--time-budget"
    with pytest.raises(UsageError, match=r"decode.beam=0 \(--beam\): must be >= 1"):
        build_config(None, ["decode.beam=0"])


def test_ctrl_c_exits_130(monkeypatch, tiny_model):
    import mtx.cli.model as model_cli

    def interrupted(model):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_cli, "describe", interrupted)
    r = CliRunner().invoke(app, ["info", "--model", str(tiny_model)])
    assert r.exit_code == 130 and "mtx: interrupted" in r.stderr
