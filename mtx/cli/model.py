"""Commands about model directories and corpora: `mtx export`, `mtx shortlist`, `mtx info`, `mtx plot`, `mtx fetch`."""

import json
from pathlib import Path

import typer
from typer import Argument
from typer import Option as Opt

from mtx.cli import common as o
from mtx.data.multi30k import fetch_multi30k
from mtx.decode.argos import export_argos
from mtx.decode.export import export_ct2
from mtx.errors import UsageError
from mtx.train.info import describe, render
from mtx.train.plots import plot_runs
from mtx.train.shortlist import make_shortlist


def export(
    model: Path = Argument(..., help="Model directory."),
    out: Path = Argument(..., help="ct2: a directory; argos: a .argosmodel file, or a directory (one per direction)."),
    format_: str = Opt("ct2", "--format", help="ct2 (a CTranslate2 model) or argos (Argos Translate packages)."),
    quantize: str | None = Opt(
        None, help="int8, int8_float32, int16, float16 or bfloat16 weights.", show_default="fp32"
    ),
    force: bool = Opt(False, help="Replace OUT if it exists."),
) -> None:
    """Export a model for another engine: a CTranslate2 directory (the tokenizer and mtx.json beside it), or Argos
    Translate packages, which LibreTranslate loads."""
    if format_ == "argos":
        for path in export_argos(model, out, quantize, force):
            typer.echo(str(path))
        return
    if format_ != "ct2":
        raise UsageError(f"--format {format_!r}: expected ct2 or argos")
    typer.echo(str(export_ct2(model, out, quantize, force)))


def shortlist(
    model: Path = o.MODEL,
    data: str | None = Opt(None, help="Corpus (any --data form of mtx train).", show_default="the model's corpus"),
    k: int | None = Opt(None, help="Target pieces kept per source piece.", show_default="the model's, 100"),
    n: int | None = Opt(None, help="Most frequent target pieces, always allowed.", show_default="the model's, 100"),
) -> None:
    """Learn a model's vocabulary shortlist from its training corpus (mtx train writes one; older models lack
    it): with --shortlist, decoding scores only the target pieces a batch's sources call for."""
    path, short = make_shortlist(model, data, k, n)
    typer.echo(f"{path}: {short.table.shape[1]} target pieces per source piece, {len(short.frequent)} always")


def info(model: Path = o.MODEL, json_: bool = Opt(False, "--json", help="One JSON object.")) -> None:
    """What a model is made of: parameters by component with their formulas, tokenizer, training, config, files."""
    d = describe(model)
    typer.echo(json.dumps(d, ensure_ascii=False) if json_ else render(d))


def plot(
    runs: list[Path] = Argument(..., help="Model directories (or their train_log.jsonl) to overlay."),
    out: Path = Opt(Path("curves.png"), "--out", "-o", help="PNG file to write."),
    x: str = Opt("step", help="step or minutes (of training)."),
) -> None:
    """Training curves of one or more runs: loss, validation BLEU, learning rate, tokens/s."""
    if x not in ("step", "minutes"):
        raise UsageError(f"--x {x!r}: expected step or minutes")
    typer.echo(str(plot_runs(runs, out, x)))


def fetch(out: Path = Opt(Path("data/multi30k"), help="Where to write {split}.{lang} files.")) -> None:
    """Download Multi30k (de, en) from the Hugging Face hub (needs a network)."""
    for p in fetch_multi30k(out):
        typer.echo(str(p))
