"""`mtx evaluate`'s pipeline: decode a test split (or a pair of files) for each of a model's pairs, write the
hypotheses, score them with sacreBLEU and chrF; with confidence intervals, or paired significance tests against a
baseline model; and the report in text or JSON lines."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtx.console import ProgressBar
from mtx.data import pairs as P
from mtx.data.glossary import Glossary, read_glossary, terms_used
from mtx.data.multi30k import ensure_data_dir
from mtx.data.sources import Corpus, data_spec
from mtx.data.text import check_parallel, read_lines
from mtx.decode.confidence import decile_overlap, mean_logprob, spearman
from mtx.decode.ct2 import NO_TERMS
from mtx.decode.load import load
from mtx.decode.metrics import paired_tests, score, sentence_chrf, with_confidence
from mtx.decode.translator import BatchTranslator, Translation
from mtx.errors import MtxError, UsageError
from mtx.specs import parse_corpora

log = logging.getLogger(__name__)


@dataclass
class Report:
    rows: list[dict]  # one scored pair each
    beam: int
    alpha: float
    device: str
    total_s: float = 0.0
    confidence: dict = field(default_factory=dict)  # metric: {score, mean, ci} (--ci)
    comparison: dict = field(default_factory=dict)  # paired tests against a baseline (--compare)
    baseline: Path | None = None
    model: Path | None = None
    rules: str = ""  # the repetition rules in force, for the summary line ("" when off)


def evaluate(
    model: Path | list[Path],
    engine: str = "mtx",
    device: str = "auto",
    decoding: dict | None = None,
    *,
    data: str | None = None,
    split: str | None = None,
    src_file: Path | None = None,
    ref_file: Path | None = None,
    pair: str | None = None,
    output: Path | None = None,
    ci: bool = False,
    compare: Path | None = None,
    glossary: Path | None = None,
) -> Report:
    """Score `model` on each of its pairs (or `pair`) of the corpus' `split`, or on `src_file`/`ref_file`;
    `decoding`: options of `load` (beam, alpha, batch_tokens); `glossary`: a file of terms whose translations
    the hypotheses must hold (the report counts those they do)."""
    t0 = time.time()
    decoding = decoding or {}
    if glossary is not None and engine != "mtx":
        raise UsageError(NO_TERMS)
    terms = read_glossary(glossary) if glossary is not None else None
    translator, cfg = load(model, engine, device, **decoding)
    models = model if isinstance(model, list) else [model]
    model, ensemble = models[0], len(models) > 1  # an ensemble's hypotheses go beside its first model's
    trained = P.pairs_of(cfg.data)
    if (src_file is None) != (ref_file is None):
        raise UsageError("--src-file and --ref-file go together")
    if pair is None and src_file is None and len(trained) > 1:
        directions = trained
    else:
        directions = [P.choose(trained, None, pair, log.warning)]
    if (ci or compare is not None) and len(directions) > 1:
        raise UsageError("--ci and --compare score one pair: add --pair")
    baseline = _baseline(compare, engine, device, decoding, directions[0], model) if compare is not None else None
    corpus = None
    if src_file is None:
        spec = data_spec(data, cfg.data) or ensure_data_dir(tuple(P.languages(directions)))
        corpus = Corpus(parse_corpora(str(spec))[0].path, cfg.data)  # a model of several corpora: the first
    rows = []
    for src, tgt in directions:
        if corpus is not None:
            if src is None:
                raise UsageError(f"the model translates into {tgt} from several languages: name one with --pair")
            sources, refs, split = test_split(corpus, split, src, tgt)
        else:
            check_parallel(src_file, ref_file)
            sources, refs, split = read_lines(src_file), read_lines(ref_file), split or src_file.stem
        name = f"{src}-{tgt}" if src else f"?-{tgt}"
        hyp_file = output or model / (
            ("ensemble." if ensemble else "") + hypothesis_name(split, (src, tgt), len(trained))
        )
        prefix = P.prefix_ids(translator.tokenizer, trained, tgt)
        row = score_pair(translator, sources, refs, split, hyp_file, prefix, terms)
        rows.append(row | {"pair": name, "split": split})
    d = cfg.decode
    report = Report(rows, d.beam, d.alpha, str(translator.device), time.time() - t0, model=model, baseline=compare)
    report.rules = rules_text(d.no_repeat_ngram, d.repetition_penalty)
    if ci and baseline is None:
        report.confidence = with_confidence(rows[0]["hyps"], rows[0]["refs"])
    if baseline is not None:
        base, base_cfg = baseline
        r, (src, tgt) = rows[0], directions[0]
        hyp_file = compare / hypothesis_name(split, (src, tgt), len(P.pairs_of(base_cfg.data)))
        prefix = P.prefix_ids(base.tokenizer, P.pairs_of(base_cfg.data), tgt)
        base_hyps = [tr.text for tr in decode_to_file(base, r["sources"], split, hyp_file, prefix, terms)]
        report.comparison = paired_tests(base_hyps, r["hyps"], r["refs"])
    return report


def _baseline(compare: Path, engine: str, device: str, decoding: dict, direction, model: Path):
    """The baseline's translator and config, which must translate `direction` too."""
    baseline, base_cfg = load(compare, engine, device, **decoding)
    base_trained, (src, tgt) = P.pairs_of(base_cfg.data), direction
    if src is None or (src, tgt) not in base_trained:
        have, want = ", ".join(P.name(p) for p in base_trained), f"{src or '?'}-{tgt}"
        raise UsageError(f"--compare {compare}: translates {have}, --model {model} translates {want}")
    return baseline, base_cfg


def hypothesis_name(split: str, pair: tuple[str | None, str], n_pairs: int) -> str:
    """MODEL/SPLIT.hyp.TGT for a one-pair model, MODEL/SPLIT.hyp.SRC-TGT otherwise."""
    src, tgt = pair
    return f"{split}.hyp.{tgt}" if n_pairs == 1 else f"{split}.hyp.{src or '?'}-{tgt}"


def test_split(corpus: Corpus, split: str | None, src: str, tgt: str) -> tuple[list[str], list[str], str]:
    """A test split's sources and references (`split`, else the corpus' test split); an empty line is an error."""
    ps = corpus.split("test", src, tgt, split)
    if ps is None:
        raise UsageError(f"{corpus}: no test split; name one with --split, or give --src-file and --ref-file")
    cols = ps.ds.to_dict()
    for i, (x, y) in enumerate(zip(cols["src"], cols["tgt"], strict=True)):
        for side, text in (("src", x), ("tgt", y)):
            if not (text and text.strip()):
                raise MtxError(f"{ps.where(i, side)}: empty line in a parallel corpus")
    return cols["src"], cols["tgt"], ps.name


def decode_to_file(translator: BatchTranslator, sources: list[str], split: str, output: Path, prefix: list[int],
                   glossary: Glossary | None = None) -> list[Translation]:  # fmt: skip
    """Translate `sources` (a progress bar on a terminal) and write the hypotheses to `output`."""
    with ProgressBar(len(sources), f"decoding {split}") as bar:
        trs = translator.translate(sources, prefix=prefix, glossary=glossary, on_progress=bar.advance)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("".join(tr.text + "\n" for tr in trs), encoding="utf-8")
    return trs


def score_pair(translator: BatchTranslator, sources: list[str], refs: list[str], split: str, hyp_file: Path,
               prefix: list[int], glossary: Glossary | None = None) -> dict:  # fmt: skip
    t1 = time.time()
    trs = decode_to_file(translator, sources, split, hyp_file, prefix, glossary)
    decode_s = time.time() - t1
    hyps = [tr.text for tr in trs]
    s = score(hyps, refs)
    conf, chrfs = [tr.confidence for tr in trs], sentence_chrf(hyps, refs)
    alpha = translator.cfg.alpha
    return ({"terms": terms_used(glossary, sources, hyps)} if glossary is not None else {}) | {
        "bleu": round(s.bleu, 2),
        "chrf": round(s.chrf, 2),
        "sentences": len(sources),
        "sents_per_s": round(len(sources) / decode_s, 1),
        "bleu_signature": s.bleu_signature,
        "chrf_signature": s.chrf_signature,
        "hyp_file": str(hyp_file),
        "score": s,
        "hyps": hyps,
        "refs": refs,
        "sources": sources,
        "decode_s": decode_s,
        "confidence_spearman": round(spearman(conf, chrfs), 3),  # how well the confidence ranks the sentences
        "confidence_worst_decile": round(decile_overlap(conf, chrfs), 3),
        "confidence": [round(c, 4) for c in conf],  # each sentence's
        "sentence_chrf": [round(c, 2) for c in chrfs],
        "means": [mean_logprob(tr.nbest[0][1], len(tr.tokens), alpha) for tr in trs],
    }


def render(report: Report, as_json: bool = False) -> list[str]:
    """The report's lines: scores with signatures (a table for several pairs), or one JSON object a pair; then the
    confidence intervals or the paired tests."""
    rows = report.rows
    if as_json:
        hidden = ("hyps", "refs", "score", "sources", "means")
        out = [json.dumps({k: v for k, v in r.items() if k not in hidden}) for r in rows]
    elif len(rows) > 1:
        out = _table(report)
    else:
        r, s = rows[0], rows[0]["score"]
        out = [s.bleu_text, f"chrF2 = {s.chrf:.2f}", f"BLEU signature: {s.bleu_signature}"]
        out += [f"chrF signature: {s.chrf_signature}"]
        out += [
            f"{r['sentences']} sentences, beam {report.beam}, alpha {report.alpha}{report.rules}, {report.device}: "
            f"decoding {r['decode_s']:.1f}s ({r['sents_per_s']:.1f} sent/s), total {report.total_s:.1f}s; hypotheses "
            f"in {r['hyp_file']}"
        ]
        out.append(
            f"confidence: Spearman {r['confidence_spearman']:.3f} with sentence chrF; the worst-chrF tenth is "
            f"{100 * r['confidence_worst_decile']:.0f}% in the lowest-confidence tenth"
        )
        if "terms" in r:
            found, used = r["terms"]
            out.append(f"glossary: {found} terms found in the sources, {used} used ({100 * used / max(found, 1):.1f}%)")
    for name, c in report.confidence.items():
        out.append(f"{name} = {c['score']:.2f}, 95% interval {c['mean']:.2f} ± {c['ci']:.2f} (bootstrap, 1000)")
    if report.comparison:
        out += _comparison(report.comparison, report.baseline, report.model)
    return out


def rules_text(no_repeat_ngram: int, penalty: float) -> str:
    """What is on of the two repetition rules, for the summary line: ", no repeated 4-gram", ", repetition
    penalty 1.2", both, or "" for neither."""
    out = f", no repeated {no_repeat_ngram}-gram" if no_repeat_ngram else ""
    return out + (f", repetition penalty {penalty:g}" if penalty != 1.0 else "")


def _table(report: Report) -> list[str]:
    rows = report.rows
    out = [f"{'pair':<8} {'BLEU':>6} {'chrF2':>6} {'sent/s':>7}   hypotheses"]
    for r in rows:
        out.append(f"{r['pair']:<8} {r['bleu']:>6.2f} {r['chrf']:>6.2f} {r['sents_per_s']:>7.1f}   {r['hyp_file']}")
    mean_bleu = sum(r["bleu"] for r in rows) / len(rows)
    mean_chrf = sum(r["chrf"] for r in rows) / len(rows)
    out.append(f"{'mean':<8} {mean_bleu:>6.2f} {mean_chrf:>6.2f}")
    out.append(f"BLEU signature: {rows[0]['bleu_signature']}")
    out.append(f"chrF signature: {rows[0]['chrf_signature']}")
    out.append(f"{rows[0]['split']}, beam {report.beam}, {report.device}: total {report.total_s:.1f}s")
    return out


def _comparison(tests: dict, baseline: Path | None, system: Path | None) -> list[str]:
    out = [f"\npaired tests, {system} against the baseline {baseline} (sacreBLEU: bootstrap 1000, AR 10000):"]
    out.append(f"{'metric':<7} {'system':<10} {'score':>6}   95% interval     p (bootstrap)  p (AR)")
    for name, t in tests.items():
        for who, r in (("baseline", t["baseline"]), ("system", t["system"])):
            p = f"{r['p_bs']:>13.4f}  {r['p_ar']:.4f}" if who == "system" else ""
            out.append(f"{name:<7} {who:<10} {r['score']:>6.2f}   {r['mean']:6.2f} ± {r['ci']:<5.2f}  {p}")
    p_bs = tests["BLEU"]["system"]["p_bs"]
    verdict = "no significant difference" if p_bs >= 0.05 else "a significant difference"
    out.append(f"BLEU: {verdict} at p < 0.05 (paired bootstrap p = {p_bs:.4f}); {tests['BLEU']['signature']}")
    return out
