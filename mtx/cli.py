"""The `mtx` command: thin wrappers that parse options, call the library and print."""

from __future__ import annotations

import copy
import functools
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from mtx.errors import MtxError, UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Machine translation: train, translate, evaluate.",
)
DEFAULT_MODEL = Path("checkpoints/multi30k-de-en")
_state = {"debug": False}


def friendly(fn):
    """Turn MtxError into one line on stderr and its exit code; a traceback only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MtxError as e:
            if _state["debug"]:
                raise
            typer.echo(f"mtx: error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("mtx: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False) -> None:
    _state["debug"] = debug


def _positive(name: str, value: int | float | None, zero_ok: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not zero_ok)):
        raise UsageError(f"{name} must be {'>= 0' if zero_ok else '> 0'}, got {value}")


def _load(
    model_dir: Path,
    device: str,
    beam: int | None,
    batch_tokens: int | None,
    nbest: int = 1,
    alpha: float | None = None,
    engine: str = "mtx",
    workers: int = 1,
):
    """The translator of a model directory (mtx's own, or CTranslate2's), with the decoding options given on the
    command line."""
    from mtx import checkpoint
    from mtx.config import Config
    from mtx.step import resolve_device
    from mtx.translator import Translator

    if engine not in ("mtx", "ct2"):
        raise UsageError(f"--engine {engine!r}: expected mtx or ct2")
    dev = resolve_device(device)
    if engine == "ct2":
        from mtx.ct2 import exported_dir

        path = exported_dir(model_dir, functools.partial(typer.echo, err=True))
        cfg = Config.from_dict(json.loads((path / "mtx.json").read_text(encoding="utf-8"))["config"], str(path))
    else:
        model, tokenizer, cfg, meta = checkpoint.load(model_dir, dev)
    d = cfg.decode
    for key, value in (("beam", beam), ("alpha", alpha), ("batch_tokens", batch_tokens), ("nbest", nbest)):
        if value is not None:
            setattr(d, key, value)
    if d.beam > 0:  # a bad --beam is reported as such, not raised to --nbest
        d.beam = max(d.beam, d.nbest)
    cfg.validate("")
    if engine == "ct2":
        from mtx.ct2 import CT2Translator

        return CT2Translator(path, d, dev, workers=workers), cfg
    return Translator(model, tokenizer, d, dev), cfg


def _overrides(set_: list[str] | None, flags: dict) -> list[str]:
    """The `--set` items, then the command-line options that were given, as `section.key=value` items."""
    return [*(set_ or []), *(f"{k}={v}" for k, v in flags.items() if v is not None)]


def _lines(path: Path | None) -> Iterator[str]:
    """Lines of a UTF-8 file, or of stdin; invalid UTF-8 names the line."""
    name = str(path) if path else "<stdin>"
    try:
        stream = open(path, "rb") if path else sys.stdin.buffer  # noqa: SIM115
    except OSError as e:
        raise MtxError(f"{path}: cannot read ({e.strerror})") from None
    with stream:
        for i, raw in enumerate(stream, 1):
            try:
                yield raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise MtxError(f"{name}:{i}: invalid UTF-8 at byte {e.start}") from None


@app.command()
@friendly
def train(
    data: Annotated[
        str | None,
        typer.Option(
            help="A directory of {split}.{lang} files, a TSV/CSV/JSONL/Parquet file (or a directory of "
            "{split}.EXT), a save_to_disk directory, or hf:NAME[:CONFIG].",
            show_default="data.path, $MTX_DATA or Multi30k",
        ),
    ] = None,
    src: Annotated[str | None, typer.Option(help="Source language code.", show_default="de")] = None,
    tgt: Annotated[str | None, typer.Option(help="Target language code.", show_default="en")] = None,
    pairs: Annotated[
        str | None, typer.Option(help="Several directions in one model, e.g. de-en,en-de (instead of --src/--tgt).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Model directory to write.")] = DEFAULT_MODEL,
    config: Annotated[Path | None, typer.Option(help="TOML or JSON config file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. model.d_model=256.")] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(help="Minutes of training (from the first step, validation included; 0: no limit)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the training saved in this model directory (or from one of its state-N folders)."),
    ] = None,
    accum: Annotated[
        int | None, typer.Option(help="Batches per update on each process (gradient accumulation).")
    ] = None,
    compile_: Annotated[
        bool, typer.Option("--compile", help="torch.compile the training step (slower start; did not pay on CPU).")
    ] = False,
    gpus: Annotated[
        int, typer.Option(help="Train on this many GPUs of this machine (runs itself under torchrun).")
    ] = 1,
) -> None:
    """Train a tokenizer and a Transformer (--set model.arch=rnn: an RNN); keep the best checkpoint in --out."""
    from mtx import distributed

    _positive("--gpus", gpus)
    if gpus > 1 and not distributed.launched():
        import subprocess

        import torch

        found = torch.cuda.device_count()
        if found < gpus:
            raise UsageError(f"--gpus {gpus}: this machine has {found} CUDA device(s); on CPUs use torchrun directly")
        raise typer.Exit(subprocess.run(distributed.launch_command(gpus, sys.argv[1:])).returncode)
    from mtx.config import Config, build_config, check_resume, configure
    from mtx.corpus import ensure_data_dir
    from mtx.pairs import languages, pairs_of
    from mtx.sources import data_spec
    from mtx.step import resolve_device
    from mtx.train import train as run_train
    from mtx.train_state import find_state, load_state, model_dir_of

    dev = resolve_device(device)
    if pairs is not None and (src is not None or tgt is not None):
        raise UsageError("--pairs names every direction: leave out --src and --tgt")
    flags = {"train.device": dev.type, "data.src": src, "data.tgt": tgt, "train.accum": accum, "data.pairs": pairs}
    flags["data.path"] = data
    flags |= {"train.compile": True if compile_ else None, "train.time_budget_min": time_budget}
    overrides = _overrides(set_, flags)
    if resume is None:
        cfg = configure(config, overrides, dev.type)
    else:
        info, _, _ = load_state(find_state(resume))
        saved = Config.from_dict(info["config"], str(resume))
        cfg = build_config(config, overrides, base=copy.deepcopy(saved))
        check_resume(saved, cfg, "--resume")
        out = model_dir_of(resume) if out == DEFAULT_MODEL else out
    log = functools.partial(typer.echo, err=True)
    directions = pairs_of(cfg.data)
    spec = data_spec(None, cfg.data) or ensure_data_dir(None, tuple(languages(directions)), log)
    log(f"training {', '.join(f'{s}->{t}' for s, t in directions)} on {spec} -> {out}")
    summary = run_train(cfg, spec, out, log=log, resume=resume)
    summary.pop("history")
    typer.echo(json.dumps(summary))


@app.command()
@friendly
def translate(
    text: Annotated[list[str] | None, typer.Argument(help="Sentences to translate (else --input or stdin).")] = None,
    model: Annotated[Path, typer.Option(help="Model directory.")] = DEFAULT_MODEL,
    beam: Annotated[int | None, typer.Option(help="Beam size (1 = greedy).", show_default="the model's, 5")] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="File with one sentence a line.")] = None,
    nbest: Annotated[
        int,
        typer.Option(
            help="Print this many candidates, tab-separated with scores. A score, for every beam size: the "
            "candidate's summed token log-probabilities (EOS included) / ((5 + tokens) / 6) ** alpha."
        ),
    ] = 1,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object a line, with the scores.")] = False,
    batch_tokens: Annotated[int | None, typer.Option(help="Tokens per decoding batch.")] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Length penalty exponent (GNMT; 0 = none).", show_default="the model's")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    attention: Annotated[
        Path | None, typer.Option(help="Draw the cross-attention of the one TEXT's translation into this PNG.")
    ] = None,
    attention_layer: Annotated[int, typer.Option(help="Decoder layer to draw (-1: the last).")] = -1,
    attention_heads: Annotated[bool, typer.Option(help="One panel per head instead of their mean.")] = False,
    to: Annotated[
        str | None, typer.Option(help="Target language, for a model of several.", show_default="its only one")
    ] = None,
    pair: Annotated[str | None, typer.Option(help="Direction, e.g. de-fr (instead of --to).")] = None,
    engine: Annotated[
        str, typer.Option(help="mtx (its own search) or ct2 (CTranslate2; exports on first use).")
    ] = "mtx",
) -> None:
    """Translate sentences: one output line per input line, in order; an empty line gives an empty line."""
    from mtx.console import ProgressBar

    if attention is not None and (not text or len(text) != 1):
        raise UsageError("--attention draws one sentence: give exactly one TEXT argument")
    from mtx import pairs as P

    if attention is not None and engine != "mtx":
        raise UsageError("--attention draws mtx's own attention: leave out --engine ct2")
    translator, cfg = _load(model, device, beam, batch_tokens, nbest, alpha, engine)
    trained = P.pairs_of(cfg.data)
    src_lang, tgt_lang = P.choose(trained, to, pair, functools.partial(typer.echo, err=True))
    translator.prefix = P.prefix_ids(translator.tokenizer, trained, tgt_lang)
    if attention is not None:
        from mtx.attention import attention_of, draw

        src, tgt, weights = attention_of(
            translator.model, translator.tokenizer, translator.cfg, text[0], translator.device, translator.prefix
        )
        draw(src, tgt, weights, attention, attention_layer, attention_heads)
        typer.echo(f"attention: {attention}", err=True)
    lines = iter(text) if text else _lines(input)
    # A bar for a file whose translations go elsewhere than the terminal.
    total = sum(1 for _ in _lines(input)) if input is not None and not text and not sys.stdout.isatty() else 0
    with ProgressBar(total, "translating") as bar:
        translator.on_progress = bar.advance
        for tr in translator.stream(lines):
            if json_:
                rec = {"translation": tr.text, "nbest": [{"text": t, "score": round(s, 4)} for t, s in tr.nbest]}
                rec["pair"] = f"{src_lang or '?'}-{tgt_lang}"
                typer.echo(json.dumps(rec, ensure_ascii=False))
            elif nbest > 1:
                typer.echo("\t".join(f"{t}\t{s:.4f}" for t, s in tr.nbest))
            else:
                typer.echo(tr.text)


@app.command()
@friendly
def evaluate(
    model: Annotated[Path, typer.Option(help="Model directory.")] = DEFAULT_MODEL,
    data: Annotated[
        str | None, typer.Option(help="Corpus (any --data form of mtx train).", show_default="the model's corpus")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Split to decode.", show_default="the model's data.test_split, or test")
    ] = None,
    src_file: Annotated[Path | None, typer.Option(help="Source file (instead of --data/--split).")] = None,
    ref_file: Annotated[Path | None, typer.Option(help="Reference file (with --src-file).")] = None,
    pair: Annotated[
        str | None, typer.Option(help="One direction, e.g. de-fr.", show_default="every pair of the model")
    ] = None,
    beam: Annotated[int | None, typer.Option(help="Beam size.", show_default="the model's, 5")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Where to write hypotheses.", show_default="MODEL/SPLIT.hyp.TGT")
    ] = None,
    batch_tokens: Annotated[int | None, typer.Option(help="Tokens per decoding batch.")] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Length penalty exponent (GNMT; 0 = none).", show_default="the model's")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per pair.")] = False,
    engine: Annotated[
        str, typer.Option(help="mtx (its own search) or ct2 (CTranslate2; exports on first use).")
    ] = "mtx",
    ci: Annotated[bool, typer.Option("--ci", help="95% confidence intervals (sacreBLEU's bootstrap).")] = False,
    compare: Annotated[
        Path | None, typer.Option(help="A baseline model directory: paired significance tests against it.")
    ] = None,
) -> None:
    """Decode a test set and print sacreBLEU and chrF with their signatures (--ci: with 95% intervals; --compare A:
    A decoded too, and sacreBLEU's paired bootstrap and approximate randomisation tests of this model against A).
    A model of several pairs is scored on each (a table), or on --pair."""
    from mtx import pairs as P
    from mtx.corpus import check_parallel, ensure_data_dir, read_lines
    from mtx.sources import Corpus, data_spec

    t0 = time.time()
    translator, cfg = _load(model, device, beam, batch_tokens, alpha=alpha, engine=engine)
    trained = P.pairs_of(cfg.data)
    if (src_file is None) != (ref_file is None):
        raise UsageError("--src-file and --ref-file go together")
    if pair is None and src_file is None and len(trained) > 1:
        directions = trained
    else:
        directions = [P.choose(trained, None, pair, echo_err)]
    if (ci or compare is not None) and len(directions) > 1:
        raise UsageError("--ci and --compare score one pair: add --pair")
    baseline = None
    if compare is not None:
        baseline, base_cfg = _load(compare, device, beam, batch_tokens, alpha=alpha, engine=engine)
        base_trained, (src, tgt) = P.pairs_of(base_cfg.data), directions[0]
        if src is None or (src, tgt) not in base_trained:
            have, want = ", ".join(P.name(p) for p in base_trained), f"{src or '?'}-{tgt}"
            raise UsageError(f"--compare {compare}: translates {have}, --model {model} translates {want}")
        baseline.prefix = P.prefix_ids(baseline.tokenizer, base_trained, tgt)
    corpus = None
    if src_file is None:
        spec = data_spec(data, cfg.data) or ensure_data_dir(None, tuple(P.languages(directions)), echo_err)
        corpus = Corpus(spec, cfg.data)
    rows = []
    for src, tgt in directions:
        if src_file is None:
            if src is None:
                raise UsageError(f"the model translates into {tgt} from several languages: name one with --pair")
            sources, refs, split = _test_split(corpus, split, src, tgt)
        else:
            check_parallel(src_file, ref_file)
            sources, refs, split = read_lines(src_file), read_lines(ref_file), split or src_file.stem
        translator.prefix = P.prefix_ids(translator.tokenizer, trained, tgt)
        name = f"{src}-{tgt}" if src else f"?-{tgt}"
        hyp_file = output or model / (f"{split}.hyp.{tgt}" if len(trained) == 1 else f"{split}.hyp.{name}")
        rows.append(_score_pair(translator, sources, refs, split, hyp_file) | {"pair": name, "split": split})
    if json_:
        for r in rows:
            typer.echo(json.dumps({k: v for k, v in r.items() if k not in ("hyps", "refs", "score", "sources")}))
    elif len(rows) > 1:
        _print_table(rows, cfg.decode.beam, translator.device, time.time() - t0)
    else:
        _print_scores(rows[0], cfg.decode.beam, cfg.decode.alpha, translator.device, time.time() - t0)
    if ci and baseline is None:
        from mtx.metrics import with_confidence

        for name, c in with_confidence(rows[0]["hyps"], rows[0]["refs"]).items():
            typer.echo(f"{name} = {c['score']:.2f}, 95% interval {c['mean']:.2f} ± {c['ci']:.2f} (bootstrap, 1000)")
    if baseline is not None:
        from mtx.metrics import paired_tests

        r, (src, tgt) = rows[0], directions[0]
        name = f"{split}.hyp.{tgt}" if len(P.pairs_of(base_cfg.data)) == 1 else f"{split}.hyp.{src}-{tgt}"
        base_hyps = _decode(baseline, r["sources"], split, compare / name)
        _print_comparison(paired_tests(base_hyps, r["hyps"], r["refs"]), compare, model)


def _test_split(corpus, split: str | None, src: str, tgt: str) -> tuple[list[str], list[str], str]:
    """A test split's sources and references (--split, else the corpus' test split); an empty line is an error."""
    ps = corpus.split("test", src, tgt, split)
    if ps is None:
        raise UsageError(f"{corpus}: no test split; name one with --split, or give --src-file and --ref-file")
    cols = ps.ds.to_dict()
    for i, (x, y) in enumerate(zip(cols["src"], cols["tgt"], strict=True)):
        for side, text in (("src", x), ("tgt", y)):
            if not (text and text.strip()):
                raise MtxError(f"{ps.where(i, side)}: empty line in a parallel corpus")
    return cols["src"], cols["tgt"], ps.name


def echo_err(text: str) -> None:
    typer.echo(text, err=True)


def _score_pair(translator, sources: list[str], refs: list[str], split: str, hyp_file: Path) -> dict:
    from mtx.metrics import score

    t1 = time.time()
    hyps = _decode(translator, sources, split, hyp_file)
    decode_s = time.time() - t1
    s = score(hyps, refs)
    return {
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
    }


def _print_scores(r: dict, beam: int, alpha: float, device, total_s: float) -> None:
    s = r["score"]
    typer.echo(f"{s.bleu_text}")
    typer.echo(f"chrF2 = {s.chrf:.2f}")
    typer.echo(f"BLEU signature: {s.bleu_signature}")
    typer.echo(f"chrF signature: {s.chrf_signature}")
    typer.echo(
        f"{r['sentences']} sentences, beam {beam}, alpha {alpha}, {device}: decoding {r['decode_s']:.1f}s "
        f"({r['sents_per_s']:.1f} sent/s), total {total_s:.1f}s; hypotheses in {r['hyp_file']}"
    )


def _print_table(rows: list[dict], beam: int, device, total_s: float) -> None:
    typer.echo(f"{'pair':<8} {'BLEU':>6} {'chrF2':>6} {'sent/s':>7}   hypotheses")
    for r in rows:
        typer.echo(f"{r['pair']:<8} {r['bleu']:>6.2f} {r['chrf']:>6.2f} {r['sents_per_s']:>7.1f}   {r['hyp_file']}")
    mean_bleu = sum(r["bleu"] for r in rows) / len(rows)
    mean_chrf = sum(r["chrf"] for r in rows) / len(rows)
    typer.echo(f"{'mean':<8} {mean_bleu:>6.2f} {mean_chrf:>6.2f}")
    typer.echo(f"BLEU signature: {rows[0]['bleu_signature']}")
    typer.echo(f"chrF signature: {rows[0]['chrf_signature']}")
    typer.echo(f"{rows[0]['split']}, beam {beam}, {device}: total {total_s:.1f}s")


def _decode(translator, sources: list[str], split: str, output: Path) -> list[str]:
    """Translate `sources` (a progress bar on a terminal) and write the hypotheses to `output`."""
    from mtx.console import ProgressBar

    with ProgressBar(len(sources), f"decoding {split}") as bar:
        translator.on_progress = bar.advance
        hyps = [tr.text for tr in translator.translate(sources)]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    return hyps


def _print_comparison(tests: dict, baseline: Path, system: Path) -> None:
    typer.echo(f"\npaired tests, {system} against the baseline {baseline} (sacreBLEU: bootstrap 1000, AR 10000):")
    typer.echo(f"{'metric':<7} {'system':<10} {'score':>6}   95% interval     p (bootstrap)  p (AR)")
    for name, t in tests.items():
        for who, r in (("baseline", t["baseline"]), ("system", t["system"])):
            p = f"{r['p_bs']:>13.4f}  {r['p_ar']:.4f}" if who == "system" else ""
            typer.echo(f"{name:<7} {who:<10} {r['score']:>6.2f}   {r['mean']:6.2f} ± {r['ci']:<5.2f}  {p}")
    p_bs = tests["BLEU"]["system"]["p_bs"]
    verdict = "no significant difference" if p_bs >= 0.05 else "a significant difference"
    typer.echo(f"BLEU: {verdict} at p < 0.05 (paired bootstrap p = {p_bs:.4f}); {tests['BLEU']['signature']}")


@app.command()
@friendly
def export(
    model: Annotated[Path, typer.Argument(help="Model directory.")],
    out: Annotated[Path, typer.Argument(help="Directory to write.")],
    format_: Annotated[str, typer.Option("--format", help="ct2: a CTranslate2 model.")] = "ct2",
    quantize: Annotated[
        str | None, typer.Option(help="int8, int8_float32, int16, float16 or bfloat16 weights.", show_default="fp32")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Export a model for another engine: a CTranslate2 directory, with the tokenizer and mtx.json beside it."""
    from mtx.export import export_ct2

    if format_ != "ct2":
        raise UsageError(f"--format {format_!r}: expected ct2")
    typer.echo(str(export_ct2(model, out, quantize, force)))


@app.command()
@friendly
def info(
    model: Annotated[Path, typer.Option(help="Model directory.")] = DEFAULT_MODEL,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """What a model is made of: parameters by component with their formulas, tokenizer, training, config, files."""
    from mtx.info import describe, render

    d = describe(model)
    typer.echo(json.dumps(d, ensure_ascii=False) if json_ else render(d))


@app.command()
@friendly
def plot(
    runs: Annotated[list[Path], typer.Argument(help="Model directories (or their train_log.jsonl) to overlay.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("curves.png"),
    x: Annotated[str, typer.Option(help="step or minutes (of training).")] = "step",
) -> None:
    """Training curves of one or more runs: loss, validation BLEU, learning rate, tokens/s."""
    from mtx.plots import plot_runs

    if x not in ("step", "minutes"):
        raise UsageError(f"--x {x!r}: expected step or minutes")
    typer.echo(str(plot_runs(runs, out, x)))


@app.command()
@friendly
def serve(
    model: Annotated[Path, typer.Option(help="Model directory.")] = DEFAULT_MODEL,
    engine: Annotated[str, typer.Option(help="mtx or ct2 (CTranslate2; exports on first use).")] = "mtx",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one; the first line printed names it).")] = 5000,
    beam: Annotated[int | None, typer.Option(help="Beam size (1 = greedy).", show_default="the model's, 5")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    max_chars: Annotated[int, typer.Option(help="Characters per request at most.")] = 5000,
    max_sentences: Annotated[int, typer.Option(help="Sentences per request at most.")] = 128,
    batch_wait_ms: Annotated[float, typer.Option(help="How long a batch collects requests.")] = 5.0,
    batch_tokens: Annotated[
        int | None, typer.Option(help="Source pieces a batch collects at most.", show_default="12,000 / beam")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Batches decoded at once, sharing the CPU threads.", show_default="2 on a CPU, 1 on a GPU"),
    ] = None,
) -> None:
    """Serve the model over HTTP with LibreTranslate's API (POST /translate, GET /languages) and GET /health."""
    from mtx import pairs as P
    from mtx.serve import Limits, Service, listen, make_app, server

    _positive("--max-chars", max_chars)
    _positive("--max-sentences", max_sentences)
    _positive("--batch-wait-ms", batch_wait_ms, zero_ok=True)
    _positive("--batch-tokens", batch_tokens)
    _positive("--workers", workers)
    import torch

    from mtx.step import resolve_device

    if workers is None:  # two one-thread batches beat one two-thread batch on this 2-core CPU (docs/deploy.md)
        workers = 2 if resolve_device(device).type == "cpu" and torch.get_num_threads() >= 2 else 1
    if workers > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))
    translator, cfg = _load(model, device, beam, None, 1, None, engine, workers)
    log = functools.partial(typer.echo, err=True)
    limits = Limits(max_chars, max_sentences, batch_wait_ms, batch_tokens or 0, workers)
    service = Service(translator, P.pairs_of(cfg.data), limits, engine, log)
    try:
        sock = listen(host, port)
    except OSError as e:
        raise MtxError(f"cannot listen on {host}:{port} ({e.strerror})") from None
    bound = sock.getsockname()
    what = f"{engine}, beam {service.beam}, {workers} worker{'s' if workers > 1 else ''}, {model}"
    log(f"mtx serve: listening on http://{host}:{bound[1]} ({what})")
    server(make_app(service, str(model))).run(sockets=[sock])
    log("mtx serve: stopped")


bench_app = typer.Typer(help="Benchmarks that print figures as JSON lines.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("decode")
@friendly
def bench_decode(
    model: Annotated[Path, typer.Option(help="Model directory.")] = DEFAULT_MODEL,
    data: Annotated[Path | None, typer.Option(help="Directory of {split}.{lang} files.")] = None,
    split: Annotated[str, typer.Option(help="Split to decode.")] = "test_2016_flickr",
    beam: Annotated[int, typer.Option(help="Beam size for the beam settings.")] = 5,
    batch_tokens: Annotated[int | None, typer.Option(help="Tokens per decoding batch.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    settings: Annotated[
        str | None,
        typer.Option(help="Comma-separated: greedy, beam, beam_nocache.", show_default="all; ct2: greedy,beam"),
    ] = None,
    limit: Annotated[int, typer.Option(help="Decode only the first N sentences (0 = all).")] = 0,
    precision: Annotated[str, typer.Option(help="fp32, or bf16 / fp16 autocast.")] = "fp32",
    engine: Annotated[str, typer.Option(help="mtx, or ct2 (CTranslate2; exported on first use).")] = "mtx",
) -> None:
    """Decode a test set greedily, with beam search and the KV cache, and without it; one JSON line each."""
    from mtx import bench
    from mtx.corpus import default_data_dir
    from mtx.step import resolve_device

    _positive("--beam", beam)
    settings = settings or ("greedy,beam" if engine == "ct2" else "greedy,beam,beam_nocache")
    names = [s.strip() for s in settings.split(",") if s.strip()]
    for n in names:
        if n not in ("greedy", "beam", "beam_nocache"):
            raise UsageError(f"--settings: unknown setting {n!r} (greedy, beam, beam_nocache)")
    dev = resolve_device(device)
    if precision not in ("fp32", "bf16", "fp16"):
        raise UsageError(f"--precision {precision!r}: expected fp32, bf16 or fp16")
    if engine not in ("mtx", "ct2") or (engine == "ct2" and ("beam_nocache" in names or precision != "fp32")):
        raise UsageError(f"--engine {engine}: expected mtx, or ct2 without beam_nocache and --precision")
    data_dir = data or default_data_dir()
    recs = bench.decode(model, data_dir, split, dev, beam, batch_tokens, names, limit, precision, engine)
    for rec in recs:
        typer.echo(json.dumps(rec))


@bench_app.command("serve")
@friendly
def bench_serve(
    model: Annotated[Path, typer.Option(help="Model directory.")] = DEFAULT_MODEL,
    data: Annotated[Path | None, typer.Option(help="Directory of {split}.{lang} files.")] = None,
    split: Annotated[str, typer.Option(help="Split whose source sentences the clients send.")] = "test_2016_flickr",
    engine: Annotated[str, typer.Option(help="mtx or ct2.")] = "mtx",
    beam: Annotated[int, typer.Option(help="Beam size (1 = greedy).")] = 5,
    clients: Annotated[int, typer.Option(help="Concurrent clients, one sentence a request.")] = 32,
    seconds: Annotated[float, typer.Option(help="How long the clients run.")] = 30.0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "cpu",
    batch_wait_ms: Annotated[float | None, typer.Option(help="The server's --batch-wait-ms.")] = None,
    workers: Annotated[int | None, typer.Option(help="The server's --workers.", show_default="its default")] = None,
) -> None:
    """Start `mtx serve` on loopback, run concurrent clients for a while; one JSON line: requests/s, latency
    percentiles, errors."""
    from mtx import loadtest
    from mtx import pairs as P
    from mtx.checkpoint import read_config
    from mtx.corpus import default_data_dir, read_lines, split_paths

    _positive("--beam", beam)
    _positive("--clients", clients)
    _positive("--seconds", seconds)
    if engine not in ("mtx", "ct2"):
        raise UsageError(f"--engine {engine!r}: expected mtx or ct2")
    src, tgt = P.pairs_of(read_config(model)[0].data)[0]
    sentences = [s for s in read_lines(split_paths(data or default_data_dir(), split, src, tgt)[0]) if s.strip()]
    extra = ["--batch-wait-ms", str(batch_wait_ms)] if batch_wait_ms is not None else []
    extra += ["--workers", str(workers)] if workers is not None else []
    rec = loadtest.run(model, sentences, src, tgt, engine, beam, clients, seconds, device, extra)
    typer.echo(json.dumps({"pair": f"{src}-{tgt}", "split": split, **rec}))


@bench_app.command("train")
@friendly
def bench_train(
    data: Annotated[Path | None, typer.Option(help="Directory of {split}.{lang} files.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    batch_tokens: Annotated[
        int | None, typer.Option(help="Training batch size in tokens.", show_default="the preset's")
    ] = None,
    steps: Annotated[int, typer.Option(help="Timed steps.")] = 50,
    warmup: Annotated[int, typer.Option(help="Untimed steps first.")] = 10,
    config: Annotated[Path | None, typer.Option(help="TOML or JSON config file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. model.d_model=512.")] = None,
    peak_tflops: Annotated[
        float | None, typer.Option(help="Peak for MFU.", show_default="989, bf16 dense H100/H200 SXM, on CUDA")
    ] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the training step.")] = False,
) -> None:
    """Training throughput of the device's preset (or a config): one JSON line."""
    from mtx import bench
    from mtx.config import configure
    from mtx.corpus import default_data_dir
    from mtx.step import resolve_device

    _positive("--steps", steps)
    _positive("--warmup", warmup, zero_ok=True)
    dev = resolve_device(device)
    flags = {"train.device": dev.type, "train.batch_tokens": batch_tokens, "train.compile": compile_ or None}
    cfg = configure(config, _overrides(set_, flags), dev.type)
    if peak_tflops is None and dev.type == "cuda":
        peak_tflops = 989.0
    rec = bench.train_throughput(cfg, data or default_data_dir(), dev, steps, warmup, peak_tflops)
    typer.echo(json.dumps(rec))


@bench_app.command("data")
@friendly
def bench_data(
    pairs: Annotated[
        int | None, typer.Option(help="Make a corpus of this many pairs (the default corpus' train, repeated).")
    ] = None,
    data: Annotated[str | None, typer.Option(help="Or read this corpus (any --data form of mtx train).")] = None,
    src: Annotated[str, typer.Option(help="Source language code.")] = "de",
    tgt: Annotated[str, typer.Option(help="Target language code.")] = "en",
    workdir: Annotated[
        Path | None, typer.Option(help="Where to write the made corpus and the caches.", show_default="a temp dir")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. data.num_proc=1.")] = None,
) -> None:
    """Prepare a corpus as `mtx train` does, cold (empty cache) and cached, each in a fresh process: one JSON
    line each with the seconds of reading, tokenizer training and encoding, peak RSS, pairs/s and padding."""
    import shutil
    import tempfile

    from mtx import benchdata
    from mtx.corpus import default_data_dir

    if (pairs is None) == (data is None):
        raise UsageError("give one of --pairs N (a made corpus) or --data D")
    _positive("--pairs", pairs)
    work = workdir or Path(tempfile.mkdtemp(prefix="mtx-bench-data-"))
    try:
        spec = data or str(benchdata.make_corpus(work / f"corpus-{pairs}", pairs, default_data_dir(), (src, tgt)))
        settings = [*(set_ or []), f"data.src={src}", f"data.tgt={tgt}"]
        for rec in benchdata.run(spec, settings, work / "hf"):
            typer.echo(json.dumps({"pairs": pairs, "data": data, **rec}))
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)


@app.command()
@friendly
def fetch(
    out: Annotated[Path, typer.Option(help="Where to write {split}.{lang} files.")] = Path("data/multi30k"),
) -> None:
    """Download Multi30k (de, en) from the Hugging Face hub (needs a network)."""
    from mtx.corpus import fetch_multi30k

    for p in fetch_multi30k(out):
        typer.echo(str(p))
