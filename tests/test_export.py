"""CTranslate2 export and engine: the exported model decodes as mtx does; what cannot be exported is refused."""

import json
import os
import shutil
import time

import pytest
import torch
from typer.testing import CliRunner

from mtx import checkpoint
from mtx.cli.main import app
from mtx.config import Config, DecodeConfig
from mtx.decode.ct2 import exported_dir
from mtx.errors import UsageError

pytest.importorskip("ctranslate2")


def _lines(corpus, split="test_2016_flickr", lang="de"):
    return (corpus / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("ct2") / "m"
    r = CliRunner().invoke(app, ["export", str(tiny_model), str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_export_carries_the_shortlist_as_the_vocabulary_map(exported, tiny_model):
    assert (exported / "vmap.txt").read_bytes() == (tiny_model / "shortlist.txt").read_bytes()


def test_export_writes_a_ctranslate2_model(exported, tiny_model):
    assert {"model.bin", "config.json", "tokenizer.model", "mtx.json"} <= {p.name for p in exported.iterdir()}
    info = json.loads((exported / "mtx.json").read_text())
    assert info["pairs"] == ["de-en"] and info["tags"] == {} and info["quantization"] == "none"
    ct2_config = json.loads((exported / "config.json").read_text())
    assert ct2_config["add_source_eos"] is True and ct2_config["layer_norm_epsilon"] == 1e-5


@pytest.mark.parametrize("variant", [dict(), dict(pre_norm=False, tie_embeddings=False)])
def test_ctranslate2_greedy_equals_mtx_greedy(variant, tmp_path):
    """On an untrained model of each variant (so that the comparison is not between two memorised outputs):
    CTranslate2's greedy tokens are mtx's, sentence by sentence."""
    from conftest import make_pairs, random_model

    from mtx.data.tokenizer import Tokenizer
    from mtx.decode.ct2 import CT2Translator
    from mtx.decode.export import export_ct2
    from mtx.decode.translator import Translator

    src = tmp_path / "m"
    proto = (_tiny_tokenizer(tmp_path)).proto
    tok = Tokenizer(proto)
    model = random_model(seed=3, vocab_size=len(tok), **variant)
    with torch.no_grad():
        model.out_bias[:3] = -30.0  # no PAD, UNK or BOS: every output token shows in the text
    cfg = Config()
    cfg.model, cfg.data.max_tokens = model.config, 32
    checkpoint.save(src, model, tok, cfg)
    export_ct2(src, tmp_path / "ct2")
    texts = [s for s, _ in make_pairs(12, seed=4)]
    # one sentence a batch: CTranslate2 applies the length limit per batch, mtx per sentence
    decode = DecodeConfig(beam=1, max_len_a=1.0, max_len_b=5, batch_tokens=1)
    a = [t.text for t in Translator(model, tok, decode, torch.device("cpu")).translate(texts)]
    b = [t.text for t in CT2Translator(tmp_path / "ct2", decode, torch.device("cpu")).translate(texts)]
    assert a == b and len({x for x in a if x}) >= 3


def _tiny_tokenizer(tmp_path):
    from conftest import make_pairs

    from mtx.data.tokenizer import Tokenizer

    pairs = make_pairs(200, seed=9)
    return Tokenizer.train([s for s, _ in pairs] + [t for _, t in pairs], 60)


def test_engine_ct2_translates_and_evaluates_as_mtx(tiny_model, tiny_corpus, exported):
    src = _lines(tiny_corpus)
    ref = _lines(tiny_corpus, lang="en")
    r = CliRunner().invoke(app, ["translate", "--model", str(exported), "--engine", "ct2", "--beam", "3", *src])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ref
    r = CliRunner().invoke(app, ["translate", "--model", str(exported), "--engine", "ct2", "--nbest", "2", src[0]])
    assert r.exit_code == 0 and len(r.stdout.rstrip("\n").split("\t")) == 4
    r = CliRunner().invoke(app, ["evaluate", "--model", str(tiny_model), "--engine", "ct2", "--data", str(tiny_corpus)])
    assert r.exit_code == 0, r.output
    assert "BLEU = 100.00" in r.stdout and (tiny_model / "ct2" / "mtx.json").is_file()  # exported on first use


def test_the_ct2_translator_refuses_constraints_it_cannot_keep(exported):
    """A last guard under the CLI's and serve's refusals: constraints never reach CTranslate2 to be dropped."""
    from mtx.config import DecodeConfig
    from mtx.decode.ct2 import CT2Translator
    from mtx.errors import MtxError

    tr = CT2Translator(exported, DecodeConfig(beam=2), torch.device("cpu"))
    assert tr.translate(["Ein hund."], constraints=[[]])[0].text  # no terms: translated
    with pytest.raises(MtxError, match="the ct2 engine has no constrained search"):
        tr.translate(["Ein hund."], constraints=[["cat"]])


def test_quantized_export_and_refusals(tiny_model, tiny_corpus, exported, tmp_path):
    r = CliRunner().invoke(app, ["export", str(tiny_model), str(tmp_path / "q"), "--quantize", "int8"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        app, ["evaluate", "--model", str(tmp_path / "q"), "--engine", "ct2", "--data", str(tiny_corpus)]
    )
    assert r.exit_code == 0 and float(r.stdout.split("BLEU = ")[1].split()[0]) > 90, r.output
    r = CliRunner().invoke(app, ["export", str(tiny_model), str(exported)])
    assert r.exit_code == 2 and "exists (use --force" in r.stderr
    r = CliRunner().invoke(app, ["export", str(tiny_model), str(tmp_path / "x"), "--quantize", "int3"])
    assert r.exit_code == 2 and "--quantize 'int3'" in r.stderr
    r = CliRunner().invoke(app, ["translate", "--model", str(tiny_model), "--engine", "onnx", "Hund."])
    assert r.exit_code == 2 and "--engine 'onnx'" in r.stderr


def test_bench_decode_with_either_engine(tiny_model, tiny_corpus):
    recs = {}
    for engine in ("mtx", "ct2"):
        args = ["bench", "decode", "--model", str(tiny_model), "--data", str(tiny_corpus), "--device", "cpu"]
        r = CliRunner().invoke(app, [*args, "--engine", engine, "--settings", "greedy,beam", "--beam", "3"])
        assert r.exit_code == 0, r.output
        recs[engine] = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [x["setting"] for x in recs["ct2"]] == ["greedy", "beam"] and recs["ct2"][0]["engine"] == "ct2"
    for a, b in zip(recs["mtx"], recs["ct2"], strict=True):
        assert a["outputs_sha1"] == b["outputs_sha1"] and a["sents_per_s"] > 0 and b["sents_per_s"] > 0
    r = CliRunner().invoke(
        app, ["bench", "decode", "--model", str(tiny_model), "--engine", "ct2", "--settings", "beam_nocache"]
    )
    assert r.exit_code == 2 and "without beam_nocache" in r.stderr


def test_bench_decode_crosses_engines_precisions_and_shortlists_in_rounds(tiny_model, tiny_corpus):
    args = ["bench", "decode", "--model", str(tiny_model), "--data", str(tiny_corpus), "--device", "cpu"]
    args += ["--engine", "mtx,ct2", "--precision", "fp32,int8", "--shortlist", "off,on", "--settings", "greedy"]
    r = CliRunner().invoke(app, [*args, "--rounds", "2", "--limit", "8"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    got = {(x["engine"], x["precision"], x["shortlist"]) for x in recs}
    assert got == {(e, p, s) for e in ("mtx", "ct2") for p in ("fp32", "int8") for s in (False, True)}
    assert all(len(x["rounds_sents_per_s"]) == 2 and x["sentences"] == 8 for x in recs)
    by = {(x["engine"], x["precision"], x["shortlist"]): x["outputs_sha1"] for x in recs}
    assert by["mtx", "fp32", True] == by["ct2", "fp32", True]  # one shortlist file, both engines
    r = CliRunner().invoke(app, [*args[:8], "--shortlist", "maybe"])
    assert r.exit_code == 2 and "--shortlist 'maybe'" in r.stderr


def test_engine_ct2_reports_mtx_scores(tiny_model, tiny_corpus, exported):
    """The CTranslate2 engine ranks and reports its n-best by mtx's score (log p over the GNMT penalty), so its
    candidates and scores are mtx's where the two searches find the same hypotheses."""
    from mtx.decode.ct2 import CT2Translator
    from mtx.decode.translator import Translator

    model, tok, cfg, _ = checkpoint.load(tiny_model, torch.device("cpu"))
    decode = DecodeConfig(beam=3, nbest=3)
    src = _lines(tiny_corpus)[:8]
    ours = Translator(model, tok, decode, torch.device("cpu")).translate(src)
    theirs = CT2Translator(exported, decode, torch.device("cpu")).translate(src)
    for a, b in zip(ours, theirs, strict=True):
        scores = [s for _, s in b.nbest]
        assert scores == sorted(scores, reverse=True)
        assert a.nbest[0][0] == b.nbest[0][0]
        assert a.nbest[0][1] == pytest.approx(b.nbest[0][1], abs=1e-3)


def test_ctranslate2_greedy_equals_mtx_greedy_on_a_trained_model_in_real_batches(tiny_model, tiny_corpus):
    """The trained tiny model (whose outputs depend on the source's EOS, the scale, the positions...), whole
    sentences batched as each engine batches them: the same greedy translations."""
    from mtx.decode.ct2 import CT2Translator, exported_dir
    from mtx.decode.translator import Translator

    model, tok, cfg, _ = checkpoint.load(tiny_model)
    texts = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    decode = DecodeConfig(beam=1)
    ours = [t.text for t in Translator(model, tok, decode, torch.device("cpu")).translate(texts)]
    theirs = [t.text for t in CT2Translator(exported_dir(tiny_model), decode, torch.device("cpu")).translate(texts)]
    refs = (tiny_corpus / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    assert theirs == ours and sum(a == b for a, b in zip(ours, refs, strict=True)) >= 15  # a model, not noise


def argos_translate(packages: list, jobs: list[tuple[str, str, str]], tmp_path, beam: int = 1) -> list[str]:
    """Each (source, target, text) of `jobs` translated by Argos Translate's own code from the packages, installed
    with its install_from_path (scripts/argos_translate.py: only its sentence splitter, which needs a download,
    is stubbed)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("argostranslate")
    script = Path(__file__).parent.parent / "scripts" / "argos_translate.py"
    env = {**os.environ, "ARGOS_PACKAGES_DIR": str(tmp_path / "argos-packages"), "HOME": str(tmp_path / "home"),
           "ARGOS_BEAM_SIZE": str(beam), "ARGOS_COMPUTE_TYPE": "default", "ARGOS_DEVICE_TYPE": "cpu"}  # fmt: skip
    (tmp_path / "argos-packages").mkdir(parents=True, exist_ok=True)
    tsv = "".join(f"{s}\t{t}\t{x}\n" for s, t, x in jobs)
    r = subprocess.run([sys.executable, str(script), *map(str, packages), "--tsv"], input=tsv, capture_output=True,
                       text=True, env=env, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.splitlines()


def test_argos_package_translates_as_engine_ct2(tiny_model, tiny_corpus, tmp_path):
    """`mtx export --format argos`: the package Argos Translate installs and runs gives mtx's CTranslate2 outputs
    (greedy: Argos's beam search ranks its hypotheses by CTranslate2's own length penalty and patience)."""
    import zipfile

    out = tmp_path / "new" / "folder" / "de_en.argosmodel"  # its folders are made
    r = CliRunner().invoke(app, ["export", "--format", "argos", str(tiny_model), str(out)])
    assert r.exit_code == 0, r.output
    names = zipfile.ZipFile(out).namelist()
    root = "translate-de_en-1_0/"
    assert {root + "metadata.json", root + "sentencepiece.model", root + "model/model.bin"} <= set(names)
    shortlist = (tiny_model / "shortlist.txt").read_bytes()
    assert zipfile.ZipFile(out).read(root + "model/vmap.txt") == shortlist  # the model's shortlist, as it is
    meta = json.loads(zipfile.ZipFile(out).read(root + "metadata.json"))
    assert meta == {  # every field Argos Translate and LibreTranslate read, spelt out
        "package_version": "1.0", "argos_version": "1.9", "from_code": "de", "from_name": "German",
        "to_code": "en", "to_name": "English", "type": "translate", "links": [],
    }  # fmt: skip
    assert {n.split("/")[0] for n in names} == {"translate-de_en-1_0"}  # one top folder, as install_from_path wants
    lines = _lines(tiny_corpus)[:20]
    got = argos_translate([out], [("de", "en", x) for x in lines], tmp_path)
    r = CliRunner().invoke(app, ["translate", "--model", str(tiny_model), "--engine", "ct2", "--beam", "1", *lines])
    assert r.exit_code == 0 and got == r.stdout.splitlines()
    again = CliRunner().invoke(app, ["export", "--format", "argos", str(tiny_model), str(out)])
    assert again.exit_code != 0 and "exists" in again.output  # not replaced without --force
    # refused before anything is written: a package path that is a folder, a link, or inside a linked folder
    (tmp_path / "dir.argosmodel").mkdir()
    real = tmp_path / "real"
    real.mkdir()
    (real / "translate-de_en-1_0.argosmodel").symlink_to(out)
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    for target, says in ((tmp_path / "dir.argosmodel", "not a file"), (real, "symbolic link"),
                         (tmp_path / "linked", "symbolic link")):  # fmt: skip
        r = CliRunner().invoke(app, ["export", "--format", "argos", str(tiny_model), str(target), "--force"])
        assert r.exit_code == 2 and says in r.output, (target, r.output)
    assert zipfile.ZipFile(out).namelist() == names  # the linked package is untouched


def test_argos_package_files_one_a_direction(tmp_path):
    from mtx.decode.argos import outputs

    one = tmp_path / "x.argosmodel"
    assert outputs([("de", "en")], one) == [(("de", "en"), one)]
    two = [("de", "en"), ("en", "de")]
    assert outputs(two, tmp_path / "d") == [
        (("de", "en"), tmp_path / "d" / "translate-de_en-1_0.argosmodel"),
        (("en", "de"), tmp_path / "d" / "translate-en_de-1_0.argosmodel"),
    ]
    with pytest.raises(UsageError, match="the model has 2 directions: give a directory"):
        outputs(two, one)
    dotted = tmp_path / "packages.v2"  # a folder whose name has another suffix
    assert [p for _, p in outputs(two, dotted)] == [dotted / "translate-de_en-1_0.argosmodel",
                                                    dotted / "translate-en_de-1_0.argosmodel"]  # fmt: skip


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
