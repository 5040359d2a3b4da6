"""`mtx translate` and `mtx evaluate`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from mtx.cli.common import DEFAULT_MODEL, Alpha, BatchTokens, Device, Engine, Model, ModelBeam, Opt, friendly
from mtx.console import ProgressBar
from mtx.data import pairs as P
from mtx.data.text import lines
from mtx.decode.attention import attention_of, draw
from mtx.decode.evaluate import evaluate as run_evaluation
from mtx.decode.evaluate import render
from mtx.decode.load import load
from mtx.errors import UsageError

log = logging.getLogger("mtx")
NBEST_HELP = (
    "Print this many candidates, tab-separated with scores. A score, for every beam size: the candidate's summed "
    "token log-probabilities (EOS included) / ((5 + tokens) / 6) ** alpha."
)
ATTENTION_HELP = "Draw the cross-attention of the one TEXT's translation into this PNG."
EVAL_DATA_HELP = "Corpus (any --data form of mtx train)."


@friendly
def translate(
    text: Annotated[list[str] | None, typer.Argument(help="Sentences to translate (else --input or stdin).")] = None,
    model: Model = DEFAULT_MODEL,
    beam: ModelBeam = None,
    input: Annotated[Path | None, Opt("--input", "-i", help="File with one sentence a line.")] = None,
    nbest: Annotated[int, Opt(help=NBEST_HELP)] = 1,
    json_: Annotated[bool, Opt("--json", help="One JSON object a line, with the scores.")] = False,
    batch_tokens: BatchTokens = None,
    alpha: Alpha = None,
    device: Device = "auto",
    attention: Annotated[
        Path | None, Opt(help="Draw the cross-attention of the one TEXT's translation into this PNG.")
    ] = None,
    attention_layer: Annotated[int, Opt(help="Decoder layer to draw (-1: the last).")] = -1,
    attention_heads: Annotated[bool, Opt(help="One panel per head instead of their mean.")] = False,
    to: Annotated[str | None, Opt(help="Target language, for a model of several.", show_default="its only one")] = None,
    pair: Annotated[str | None, Opt(help="Direction, e.g. de-fr (instead of --to).")] = None,
    engine: Engine = "mtx",
) -> None:
    """Translate sentences: one output line per input line, in order; an empty line gives an empty line."""
    if attention is not None and (not text or len(text) != 1):
        raise UsageError("--attention draws one sentence: give exactly one TEXT argument")
    if attention is not None and engine != "mtx":
        raise UsageError("--attention draws mtx's own attention: leave out --engine ct2")
    translator, cfg = load(model, engine, device, beam=beam, alpha=alpha, batch_tokens=batch_tokens, nbest=nbest)
    trained = P.pairs_of(cfg.data)
    src_lang, tgt_lang = P.choose(trained, to, pair, log.warning)
    prefix = P.prefix_ids(translator.tokenizer, trained, tgt_lang)
    if attention is not None:
        d = translator.device
        src, tgt, weights = attention_of(translator.model, translator.tokenizer, cfg.decode, text[0], d, prefix)
        draw(src, tgt, weights, attention, attention_layer, attention_heads)
        log.info(f"attention: {attention}")
    # A bar for a file whose translations go elsewhere than the terminal.
    total = sum(1 for _ in lines(input)) if input is not None and not text and not sys.stdout.isatty() else 0
    with ProgressBar(total, "translating") as bar:
        for tr in translator.stream(iter(text) if text else lines(input), prefix=prefix, on_progress=bar.advance):
            if json_:
                rec = {"translation": tr.text, "nbest": [{"text": t, "score": round(s, 4)} for t, s in tr.nbest]}
                typer.echo(json.dumps(rec | {"pair": f"{src_lang or '?'}-{tgt_lang}"}, ensure_ascii=False))
            else:
                typer.echo("\t".join(f"{t}\t{s:.4f}" for t, s in tr.nbest) if nbest > 1 else tr.text)


@friendly
def evaluate(
    model: Model = DEFAULT_MODEL,
    data: Annotated[str | None, Opt(help=EVAL_DATA_HELP, show_default="the model's corpus")] = None,
    split: Annotated[
        str | None, Opt(help="Split to decode.", show_default="the model's data.test_split, or test")
    ] = None,
    src_file: Annotated[Path | None, Opt(help="Source file (instead of --data/--split).")] = None,
    ref_file: Annotated[Path | None, Opt(help="Reference file (with --src-file).")] = None,
    pair: Annotated[str | None, Opt(help="One direction, e.g. de-fr.", show_default="every pair of the model")] = None,
    beam: Annotated[int | None, Opt(help="Beam size.", show_default="the model's, 5")] = None,
    output: Annotated[Path | None, Opt(help="Where to write hypotheses.", show_default="MODEL/SPLIT.hyp.TGT")] = None,
    batch_tokens: BatchTokens = None,
    alpha: Alpha = None,
    device: Device = "auto",
    json_: Annotated[bool, Opt("--json", help="One JSON object per pair.")] = False,
    engine: Engine = "mtx",
    ci: Annotated[bool, Opt("--ci", help="95% confidence intervals (sacreBLEU's bootstrap).")] = False,
    compare: Annotated[
        Path | None, Opt(help="A baseline model directory: paired significance tests against it.")
    ] = None,
) -> None:
    """Decode a test set and print sacreBLEU and chrF with their signatures (--ci: with 95% intervals; --compare A:
    A decoded too, and sacreBLEU's paired bootstrap and approximate randomisation tests of this model against A).
    A model of several pairs is scored on each (a table), or on --pair."""
    options = {"engine": engine, "device": device, "beam": beam, "alpha": alpha, "batch_tokens": batch_tokens}
    options |= {"data": data, "split": split, "src_file": src_file, "ref_file": ref_file, "pair": pair}
    report = run_evaluation(model, **options, output=output, ci=ci, compare=compare)
    for line in render(report, json_):
        typer.echo(line)
