"""Commands about model directories and corpora: `mtx export`, `mtx info`, `mtx plot`, `mtx fetch`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mtx.cli.common import DEFAULT_MODEL, Json, Model, Opt, friendly
from mtx.data.multi30k import fetch_multi30k
from mtx.decode.export import export_ct2
from mtx.errors import UsageError
from mtx.train.info import describe, render
from mtx.train.plots import plot_runs

QUANTIZE_HELP = "int8, int8_float32, int16, float16 or bfloat16 weights."


@friendly
def export(
    model: Annotated[Path, typer.Argument(help="Model directory.")],
    out: Annotated[Path, typer.Argument(help="Directory to write.")],
    format_: Annotated[str, Opt("--format", help="ct2: a CTranslate2 model.")] = "ct2",
    quantize: Annotated[str | None, Opt(help=QUANTIZE_HELP, show_default="fp32")] = None,
    force: Annotated[bool, Opt(help="Replace OUT if it exists.")] = False,
) -> None:
    """Export a model for another engine: a CTranslate2 directory, with the tokenizer and mtx.json beside it."""
    if format_ != "ct2":
        raise UsageError(f"--format {format_!r}: expected ct2")
    typer.echo(str(export_ct2(model, out, quantize, force)))


@friendly
def info(model: Model = DEFAULT_MODEL, json_: Json = False) -> None:
    """What a model is made of: parameters by component with their formulas, tokenizer, training, config, files."""
    d = describe(model)
    typer.echo(json.dumps(d, ensure_ascii=False) if json_ else render(d))


@friendly
def plot(
    runs: Annotated[list[Path], typer.Argument(help="Model directories (or their train_log.jsonl) to overlay.")],
    out: Annotated[Path, Opt("--out", "-o", help="PNG file to write.")] = Path("curves.png"),
    x: Annotated[str, Opt(help="step or minutes (of training).")] = "step",
) -> None:
    """Training curves of one or more runs: loss, validation BLEU, learning rate, tokens/s."""
    if x not in ("step", "minutes"):
        raise UsageError(f"--x {x!r}: expected step or minutes")
    typer.echo(str(plot_runs(runs, out, x)))


@friendly
def fetch(out: Annotated[Path, Opt(help="Where to write {split}.{lang} files.")] = Path("data/multi30k")) -> None:
    """Download Multi30k (de, en) from the Hugging Face hub (needs a network)."""
    for p in fetch_multi30k(out):
        typer.echo(str(p))
