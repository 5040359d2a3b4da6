"""`mtx translate`, `mtx evaluate` and `mtx score`."""

from pathlib import Path

import typer
from typer import Option as Opt

from mtx.cli import common as o
from mtx.decode.calibrate import calibrate as run_calibration
from mtx.decode.evaluate import evaluate as run_evaluation
from mtx.decode.evaluate import render
from mtx.decode.output import translate_lines, write_output
from mtx.decode.scoring import score_files

NBEST = (
    "Print this many candidates, tab-separated with scores. A score, for every beam size: the candidate's summed "
    "token log-probabilities (EOS included) / ((5 + tokens) / 6) ** alpha."
)
ATTENTION = "Draw the cross-attention of the one TEXT's translation into this PNG."
COMPARE = "A baseline model directory: paired significance tests against it."
CONSTRAINTS = 'For each input line, a JSON list of target terms its translation holds: ["term", ...] or [].'
SAMPLE = "Sample instead of searching: topk=K (of the K likeliest tokens; 0: all) or topp=P; --nbest N: N samples."


def translate(
    text: list[str] | None = typer.Argument(None, help="Sentences to translate (else --input or stdin)."),
    model: list[Path] = o.MODELS,
    beam: int | None = o.MODEL_BEAM,
    input: Path | None = Opt(None, "--input", "-i", help="A text file: translated line for line (N lines in, N out)."),
    output: Path | None = Opt(
        None, "--output", "-o", help="Write the translation here (whole, or not at all).", show_default="stdout"
    ),  # fmt: skip
    nbest: int = Opt(1, help=NBEST),
    json_: bool = Opt(False, "--json", help="One JSON object a line, with the scores."),
    batch_tokens: int | None = o.BATCH_TOKENS,
    alpha: float | None = o.ALPHA,
    device: str = o.DEVICE,
    attention: Path | None = Opt(None, help=ATTENTION),
    attention_layer: int = Opt(-1, help="Decoder layer to draw (-1: the last)."),
    attention_heads: bool = Opt(False, help="One panel per head instead of their mean."),
    to: str | None = Opt(None, help="Target language, for a model of several.", show_default="its only one"),
    pair: str | None = Opt(None, help="Direction, e.g. de-fr (instead of --to)."),
    engine: str = o.ENGINE,
    sample: str | None = Opt(None, help=SAMPLE),
    temperature: float | None = Opt(None, help="Sampling: divide the logits by this.", show_default="1"),
    seed: int | None = Opt(None, help="Sampling: the random seed.", show_default="0"),
    prefix: str | None = Opt(None, help="Every translation starts with this text; the search goes on from it."),
    prefix_file: Path | None = Opt(None, help="A --prefix for each input line (empty lines: none)."),
    no_repeat_ngram: int | None = o.NO_REPEAT,
    repetition_penalty: float | None = o.REPETITION_PENALTY,
    glossary: Path | None = o.GLOSSARY,
    constraints: Path | None = Opt(None, help=CONSTRAINTS),
    precision: str | None = o.PRECISION,
    shortlist: bool | None = o.SHORTLIST,
) -> None:
    """Translate text line for line: each line's sentences translated and joined again, its spaces, blank lines and
    line ends kept (a line is one unit with --nbest, --prefix or --constraints)."""
    decoding = {"beam": beam, "alpha": alpha, "batch_tokens": batch_tokens, "nbest": nbest, "sample": sample}
    decoding |= {"temperature": temperature, "seed": seed, "precision": precision, "shortlist": shortlist}
    decoding |= {"no_repeat_ngram": no_repeat_ngram, "repetition_penalty": repetition_penalty}
    drawing = (attention, attention_layer, attention_heads)
    args = (text, input, to, pair, json_, drawing, (prefix, prefix_file), (glossary, constraints), output is not None)
    out = translate_lines(model, engine, device, decoding, *args)
    if output is not None:
        n = write_output(output, out, input if not text else None)
        typer.echo(f"translated into {output} ({n} line{'s' if n != 1 else ''})", err=True)
        return
    for line in out:
        typer.echo(line)


def evaluate(
    model: list[Path] = o.MODELS,
    data: str | None = Opt(None, help="Corpus (any --data form of mtx train).", show_default="the model's corpus"),
    split: str | None = Opt(None, help="Split to decode.", show_default="the model's data.test_split, or test"),
    src_file: Path | None = Opt(None, help="Source file (instead of --data/--split)."),
    ref_file: Path | None = Opt(None, help="Reference file (with --src-file)."),
    pair: str | None = Opt(None, help="One direction, e.g. de-fr.", show_default="every pair of the model"),
    beam: int | None = Opt(None, help="Beam size.", show_default="the model's, 5"),
    output: Path | None = Opt(None, help="Where to write hypotheses.", show_default="MODEL/SPLIT.hyp.TGT"),
    batch_tokens: int | None = o.BATCH_TOKENS,
    alpha: float | None = o.ALPHA,
    device: str = o.DEVICE,
    json_: bool = Opt(False, "--json", help="One JSON object per pair."),
    engine: str = o.ENGINE,
    ci: bool = Opt(False, "--ci", help="95% confidence intervals (sacreBLEU's bootstrap)."),
    compare: Path | None = Opt(None, help=COMPARE),
    no_repeat_ngram: int | None = o.NO_REPEAT,
    repetition_penalty: float | None = o.REPETITION_PENALTY,
    glossary: Path | None = o.GLOSSARY,
    precision: str | None = o.PRECISION,
    shortlist: bool | None = o.SHORTLIST,
) -> None:
    """Decode a test set and print sacreBLEU and chrF with their signatures (--ci: with 95% intervals; --compare A:
    A decoded too, and sacreBLEU's paired bootstrap and approximate randomisation tests of this model against A).
    A model of several pairs is scored on each (a table), or on --pair."""
    decoding = {"beam": beam, "alpha": alpha, "batch_tokens": batch_tokens}
    decoding |= {"no_repeat_ngram": no_repeat_ngram, "repetition_penalty": repetition_penalty}
    decoding |= {"precision": precision, "shortlist": shortlist}
    options = {"data": data, "split": split, "src_file": src_file, "ref_file": ref_file, "pair": pair}
    report = run_evaluation(model, engine, device, decoding, **options, output=output, ci=ci, compare=compare,
                            glossary=glossary)  # fmt: skip
    for line in render(report, json_):
        typer.echo(line)


def calibrate(
    model: Path = o.MODEL,
    data: str | None = Opt(None, help="Corpus (any --data form of mtx train).", show_default="the model's corpus"),
    split: str | None = Opt(None, help="Split to fit on (not the test split).", show_default="the model's val"),
    beam: int | None = o.MODEL_BEAM,
    alpha: float | None = o.ALPHA,
    batch_tokens: int | None = o.BATCH_TOKENS,
    device: str = o.DEVICE,
) -> None:
    """Fit the confidence of each translation (translate --json, evaluate --json, the server) to sentence chrF on
    the validation split: a confidence of 0.6 then means a translation scoring about chrF 60. Kept in
    MODEL/confidence.json; without it the confidence is exp(the mean token log-probability)."""
    decoding = {"beam": beam, "alpha": alpha, "batch_tokens": batch_tokens}
    cal, path, f = run_calibration(model, device, decoding, data=data, split=split)
    typer.echo(f"confidence = sigmoid({cal.a:.4f} * mean log-probability + {cal.b:.4f}), fitted on {f['sentences']} "
               f"sentences of {cal.split}: {path}")  # fmt: skip
    typer.echo(f"on {cal.split}: Spearman {f['spearman']:.3f} with sentence chrF; the worst-chrF tenth is "
               f"{100 * f['worst_decile']:.0f}% in the lowest-confidence tenth; mean confidence "
               f"{f['mean_confidence']:.3f}, mean chrF / 100 {f['mean_chrf']:.3f}")  # fmt: skip


def score(
    model: list[Path] = o.MODELS,
    src_file: Path = Opt(..., help="Sources, one a line."),
    ref_file: Path = Opt(..., help="Their translations, line by line."),
    json_: bool = Opt(False, "--json", help="One JSON object a line: score, logprob, tokens."),
    to: str | None = Opt(None, help="Target language, for a model of several.", show_default="its only one"),
    pair: str | None = Opt(None, help="Direction, e.g. de-fr (instead of --to)."),
    alpha: float | None = o.ALPHA,
    batch_tokens: int | None = o.BATCH_TOKENS,
    device: str = o.DEVICE,
) -> None:
    """The model's log-probability of each translation: the score `translate --json` gives (summed log-probabilities
    / ((5 + tokens) / 6) ** alpha), then the sum, a line each."""
    options = {"to": to, "pair": pair, "alpha": alpha, "batch_tokens": batch_tokens, "as_json": json_}
    for line in score_files(model, src_file, ref_file, device, **options):
        typer.echo(line)
