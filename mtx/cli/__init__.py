"""The `mtx` command: one small function a command (a module a group of them) that parses options, calls the
library and prints."""

from __future__ import annotations

from typing import Annotated

import typer

from mtx.cli import bench, common, decode, model, serve, train
from mtx.console import log_to_stderr

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Machine translation: train, translate, evaluate.",
)


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False) -> None:
    common.state["debug"] = debug
    log_to_stderr()


for command in (train.train, decode.translate, decode.evaluate, model.export, model.info, model.plot, serve.serve):
    app.command()(command)
app.add_typer(bench.app, name="bench")
app.command()(model.fetch)
