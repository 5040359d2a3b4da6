"""The `mtx` app: its commands, from the modules of cli/, each wrapped to turn a user's mistake into one line."""

import typer

from mtx.cli import bench, common, decode, model, serve, train
from mtx.console import log_to_stderr

HELP = "Machine translation: train, translate, evaluate."
app = typer.Typer(help=HELP, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    common.state["debug"] = debug
    log_to_stderr()


for command in (
    train.train,
    decode.translate,
    decode.evaluate,
    decode.score,
    decode.calibrate,
    model.export,
    model.shortlist,
    model.info,
    model.plot,
    serve.serve,
):
    app.command()(common.friendly(command))
bench_app = typer.Typer(help="Benchmarks that print figures as JSON lines.", no_args_is_help=True)
for name in ("decode", "serve", "train", "data"):
    bench_app.command(name)(common.friendly(getattr(bench, name)))
app.add_typer(bench_app, name="bench")
app.command()(common.friendly(model.fetch))
