"""Several directions in one model: pairs, tags, temperature shares, choosing a direction, end to end."""

import json
import random

import pytest
import torch
from conftest import LEXICON, TINY_SETTINGS, cli_trained
from typer.testing import CliRunner

from mtx import checkpoint
from mtx.cli.main import app
from mtx.config import build_config
from mtx.data import pairs as P
from mtx.data.batching import TrainBatches
from mtx.data.prepare import prepare_data
from mtx.errors import UsageError

FRENCH = {
    "a": "un", "dog": "chien", "cat": "chat", "man": "homme", "woman": "femme", "child": "enfant", "runs": "court",
    "jumps": "saute", "sleeps": "dort", "eats": "mange", "red": "rouge", "blue": "bleu", "big": "grand",
    "small": "petit", "here": "ici", "there": "là",
}  # fmt: skip


@pytest.fixture(scope="module")
def corpus3(tmp_path_factory):
    """train/val/test_2016_flickr in de, en and fr, word for word, line-aligned (val and test from train)."""
    root = tmp_path_factory.mktemp("corpus3")
    rng = random.Random(0)
    words = list(LEXICON)
    rows = set()
    while len(rows) < 150:
        rows.add(tuple(rng.choice(words) for _ in range(rng.randint(2, 6))))
    rows = sorted(rows)
    langs = {
        "de": lambda ws: list(ws),
        "en": lambda ws: [LEXICON[w] for w in ws],
        "fr": lambda ws: [FRENCH[LEXICON[w]] for w in ws],
    }
    for split, part in (("train", rows), ("val", rows[:15]), ("test_2016_flickr", rows[15:30])):
        for lang, f in langs.items():
            text = "".join(" ".join(f(r)).capitalize() + ".\n" for r in part)
            (root / f"{split}.{lang}").write_text(text, encoding="utf-8")
    return root


def test_parse_pairs_and_tags():
    assert P.parse_pairs("de-en, en-de") == [("de", "en"), ("en", "de")]
    for bad in ("de", "de-de", "de-en,de-en", "de-en-fr", "-en"):
        with pytest.raises(ValueError):
            P.parse_pairs(bad)
    assert not P.tagged([("de", "en")]) and not P.tagged([("de", "en"), ("fr", "en"), ("cs", "en")])
    assert P.tagged([("de", "en"), ("en", "de")])
    with pytest.raises(UsageError, match="data.pairs"):
        build_config(None, ["data.pairs=de-en,de"])


def test_temperature_shares():
    assert P.epoch_counts([100, 400], 1.0) == [100, 400]  # T = 1: as the data has them
    assert P.shares([100, 400], 2.0) == pytest.approx([1 / 3, 2 / 3])  # sqrt(100) : sqrt(400)
    assert P.epoch_counts([100, 400], 1e9) == [250, 250]  # T -> infinity: even
    assert P.epoch_counts([300, 300, 300], 5.0) == [300, 300, 300]


def test_an_epoch_draws_each_pair_its_count():
    src = [[5] * 3 for _ in range(100)] + [[6] * 3 for _ in range(400)]
    tb = TrainBatches(src, src, 60, seed=1, groups=[(0, 250), (100, 250)])
    for epoch in range(2):
        drawn = [i for b in tb.epoch(epoch) for i in b]
        small = [i for i in drawn if i < 100]
        assert len(small) == 250 and len(drawn) == 500
        assert set(small) == set(range(100))  # the small pair repeated: every example at least twice
        assert len(set(drawn) - set(small)) == 250  # the large one sampled without replacement


def test_choose_a_direction():
    trained = [("de", "en"), ("en", "de"), ("fr", "en")]
    warnings = []
    assert P.choose(trained, "de", None, warnings.append) == ("en", "de")
    assert P.choose(trained, "en", None, warnings.append) == (None, "en")  # two sources into en
    assert P.choose(trained, None, "fr-en", warnings.append) == ("fr", "en") and not warnings
    assert P.choose(trained, None, "fr-de", warnings.append) == ("fr", "de")
    assert warnings == ["warning: fr-de is zero-shot (the model was trained on de-en, en-de, fr-en)"]
    with pytest.raises(UsageError, match="choose one with --to"):
        P.choose(trained, None, None, warnings.append)
    for to, pair in (("cs", None), (None, "de-cs"), (None, "cs-en"), (None, "en-fr")):
        with pytest.raises(UsageError, match="the model's pairs are de-en, en-de, fr-en"):
            P.choose(trained, to, pair, warnings.append)
    assert P.choose([("de", "en")], None, None, warnings.append) == ("de", "en")


def test_tags_only_on_multi_target_sources(corpus3, logs):
    settings = [*TINY_SETTINGS, "model.vocab_size=120"]
    one_target = prepare_data(build_config(None, [*settings, "data.pairs=de-en,fr-en"]), corpus3)
    assert one_target.tokenizer.sp.piece_to_id("<2en>") == 1  # unknown: no tag pieces
    assert all(v.prefix == [] for v in one_target.valid)
    data = prepare_data(build_config(None, [*settings, "data.pairs=de-en,en-de,fr-en"]), corpus3)
    tags = {lang: data.tokenizer.piece_id(P.tag(lang)) for lang in ("de", "en")}
    assert [v.prefix for v in data.valid] == [[tags["en"]], [tags["de"]], [tags["en"]]]
    for v in data.valid:
        assert all(x[0] == v.prefix[0] and v.prefix[0] not in x[1:] for x in v.src)
    firsts = data.train.collate(range(len(data.train))).src[:, 0]
    assert int((firsts == tags["de"]).sum()) == 150 and int((firsts == tags["en"]).sum()) == 300
    assert any("de-en 150 (33.3%), en-de 150 (33.3%), fr-en 150 (33.3%)" in x for x in logs), logs


MULTI = [*TINY_SETTINGS, "model.vocab_size=120", "train.max_steps=700", "train.eval_every=350"]


@pytest.fixture(scope="module")
def multi_model(corpus3, tmp_path_factory):
    out = tmp_path_factory.mktemp("multi") / "m"
    args = ["train", "--data", str(corpus3), "--out", str(out), "--device", "cpu", "--pairs", "de-en,en-de,fr-en"]
    for s in MULTI:
        args += ["--set", s]
    return cli_trained(args, out, "multi")


def test_multi_pair_model_end_to_end(multi_model, corpus3):
    log = [json.loads(x) for x in (multi_model / "train_log.jsonl").read_text().splitlines()]
    last = [r for r in log if "valid_loss" in r][-1]
    per_pair = [last[f"valid_bleu.{p}"] for p in ("de-en", "en-de", "fr-en")]
    assert last["valid_bleu"] == pytest.approx(sum(per_pair) / 3)
    r = CliRunner().invoke(app, ["evaluate", "--model", str(multi_model), "--data", str(corpus3), "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["pair"] for x in rows] == ["de-en", "en-de", "fr-en"]
    assert all(x["bleu"] > 60 for x in rows), rows
    text = CliRunner().invoke(app, ["evaluate", "--model", str(multi_model), "--data", str(corpus3)]).stdout
    assert "pair" in text and "mean" in text and "en-de" in text
    de = (corpus3 / "train.de").read_text(encoding="utf-8").splitlines()[40:45]
    en = (corpus3 / "train.en").read_text(encoding="utf-8").splitlines()[40:45]
    r = CliRunner().invoke(app, ["translate", "--model", str(multi_model), "--to", "de", "--json", *en])
    assert r.exit_code == 0, r.output
    outs = [json.loads(x) for x in r.stdout.splitlines()]
    assert sum(o["translation"] == d for o, d in zip(outs, de, strict=True)) >= 4 and outs[0]["pair"] == "en-de"
    r = CliRunner().invoke(app, ["translate", "--model", str(multi_model), "--to", "cs", "Ein Hund."])
    assert r.exit_code == 2 and "the model's pairs are de-en, en-de, fr-en" in r.stderr
    r = CliRunner().invoke(app, ["translate", "--model", str(multi_model), "Ein Hund."])
    assert r.exit_code == 2 and "translates into de, en: choose one with --to" in r.stderr
    r = CliRunner().invoke(app, ["translate", "--model", str(multi_model), "--pair", "fr-de", "Un chien."])
    assert r.exit_code == 0 and "zero-shot" in r.stderr
    info = json.loads(CliRunner().invoke(app, ["info", "--model", str(multi_model), "--json"]).stdout)
    assert info["training"]["pairs"] == "de-en, en-de, fr-en"


def test_a_missing_pair_file_is_one_line_before_training(corpus3, tmp_path):
    args = ["train", "--data", str(corpus3), "--out", str(tmp_path / "m"), "--device", "cpu", "--pairs", "de-en,cs-en"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and "train.cs: file not found" in r.stderr
    assert not (tmp_path / "m").exists()


def test_single_pair_models_from_before_pairs_still_load(tiny_model, tiny_corpus, tmp_path):
    """A config.json without data.pairs / data.temperature (as written before they existed) loads and translates
    exactly as before."""
    old = tmp_path / "old"
    old.mkdir()
    for f in tiny_model.iterdir():
        if f.is_file():
            (old / f.name).write_bytes(f.read_bytes())
    doc = json.loads((old / "config.json").read_text())
    for key in ("pairs", "temperature"):
        del doc["config"]["data"][key]
    (old / "config.json").write_text(json.dumps(doc))
    a, _, _, _ = checkpoint.load(old)
    b, _, _, _ = checkpoint.load(tiny_model)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    src = (tiny_corpus / "train.de").read_text(encoding="utf-8").splitlines()[:5]
    r1 = CliRunner().invoke(app, ["translate", "--model", str(old), *src])
    r2 = CliRunner().invoke(app, ["translate", "--model", str(tiny_model), *src])
    assert r1.exit_code == 0 and r1.stdout == r2.stdout


def test_ctranslate2_engine_carries_the_tags(multi_model, corpus3):
    pytest.importorskip("ctranslate2")
    en = (corpus3 / "train.en").read_text(encoding="utf-8").splitlines()[40:48]
    outs = {}
    for engine in ("mtx", "ct2"):
        r = CliRunner().invoke(app, ["translate", "--model", str(multi_model), "--to", "de", "--engine", engine, *en])
        assert r.exit_code == 0, r.output
        outs[engine] = r.stdout
    assert outs["ct2"] == outs["mtx"]
    info = json.loads((multi_model / "ct2" / "mtx.json").read_text())
    assert info["tags"] == {"en": "<2en>", "de": "<2de>"} and info["pairs"] == ["de-en", "en-de", "fr-en"]


def test_one_translator_serves_every_target_at_once(multi_model, corpus3):
    """Options per call: the target tag goes with each call, so two threads translating into de and into en with
    one translator get what each would get alone, and the translator is left as it was."""
    from concurrent.futures import ThreadPoolExecutor

    from mtx.decode.load import load

    translator, cfg = load(multi_model, device="cpu")
    before = dict(vars(translator))
    trained = P.pairs_of(cfg.data)
    en = (corpus3 / "train.en").read_text(encoding="utf-8").splitlines()[:20]
    de = (corpus3 / "train.de").read_text(encoding="utf-8").splitlines()[:20]
    jobs = {"de": en, "en": de}

    def run(tgt: str) -> list[str]:
        return [
            t.text for t in translator.translate(jobs[tgt], prefix=P.prefix_ids(translator.tokenizer, trained, tgt))
        ]

    alone = {tgt: run(tgt) for tgt in jobs}
    with ThreadPoolExecutor(2) as pool:
        together = dict(zip(jobs, pool.map(run, jobs), strict=True))
    assert together == alone and alone["de"] != alone["en"]
    assert sum(x == y for x, y in zip(alone["de"], de, strict=True)) >= 15  # the tags reached the model
    assert vars(translator) == before


def test_argos_packages_of_a_multilingual_model(multi_model, corpus3, tmp_path):
    """One package per direction; each makes CTranslate2 start the source with the target's tag, so Argos
    Translate's own code translates each direction as `mtx translate --engine ct2` does."""
    import zipfile

    from test_export import argos_translate

    out = tmp_path / "packages.v2"  # a folder (made) whose name has a suffix
    r = CliRunner().invoke(app, ["export", "--format", "argos", str(multi_model), str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [
        f"translate-{p}-1_0.argosmodel" for p in ("de_en", "en_de", "fr_en")
    ]
    directions = (("de", "en"), ("en", "de"), ("fr", "en"))
    for (src, tgt), package in zip(directions, sorted(out.iterdir()), strict=True):  # each named for its direction
        with zipfile.ZipFile(package) as z:
            meta = json.loads(z.read(f"translate-{src}_{tgt}-1_0/metadata.json"))
            config = json.loads(z.read(f"translate-{src}_{tgt}-1_0/model/config.json"))
        assert (meta["from_code"], meta["to_code"], config["bos_token"]) == (src, tgt, f"<2{tgt}>"), package.name
    lines = {s: (corpus3 / f"test_2016_flickr.{s}").read_text(encoding="utf-8").splitlines()[:8] for s, _ in directions}
    got = argos_translate(sorted(out.iterdir()), [(s, t, x) for s, t in directions for x in lines[s]], tmp_path)
    for k, (src, tgt) in enumerate(directions):
        args = ["translate", "--model", str(multi_model), "--engine", "ct2", "--beam", "1", "--to", tgt, *lines[src]]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0 and got[8 * k : 8 * k + 8] == r.stdout.splitlines(), (src, tgt)
    single = CliRunner().invoke(app, ["export", "--format", "argos", str(multi_model), str(tmp_path / "x.argosmodel")])
    assert single.exit_code != 0 and "3 directions" in single.output


def test_score_of_a_multi_target_model_is_its_tagged_search_score(multi_model, corpus3, tmp_path):
    """`mtx score --to T` scores with T's tag at the start of each source: its score of a translation equals the
    search's score of it for `translate --to T`, for each target."""
    for src, tgt in (("en", "de"), ("de", "en")):
        lines = corpus3 / f"test_2016_flickr.{src}"
        r = CliRunner().invoke(app, ["translate", "--model", str(multi_model), "--to", tgt, "--json", "--beam", "3",
                                     "--input", str(lines)])  # fmt: skip
        assert r.exit_code == 0, r.output
        recs = [json.loads(x) for x in r.stdout.splitlines()]
        (tmp_path / "hyp").write_text("".join(x["translation"] + "\n" for x in recs), encoding="utf-8")
        args = ["score", "--model", str(multi_model), "--to", tgt, "--src-file", str(lines), "--ref-file"]
        scored = CliRunner().invoke(app, [*args, str(tmp_path / "hyp"), "--json"])
        assert scored.exit_code == 0, scored.output
        got = [json.loads(x)["score"] for x in scored.stdout.splitlines()]
        assert got == pytest.approx([x["nbest"][0]["score"] for x in recs], abs=2e-4), (src, tgt)
