"""What every command shares: errors as one line and an exit code, options several commands take, small checks."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from mtx.errors import MtxError, UsageError

Opt = typer.Option
DEFAULT_MODEL = Path("checkpoints/multi30k-de-en")
state = {"debug": False}

Model = Annotated[Path, Opt(help="Model directory.")]
Device = Annotated[str, Opt(help="auto, cpu or cuda.")]
ModelBeam = Annotated[int | None, Opt(help="Beam size (1 = greedy).", show_default="the model's, 5")]
Alpha = Annotated[float | None, Opt(help="Length penalty exponent (GNMT; 0 = none).", show_default="the model's")]
BatchTokens = Annotated[int | None, Opt(help="Tokens per decoding batch.")]
Engine = Annotated[str, Opt(help="mtx (its own search) or ct2 (CTranslate2; exports on first use).")]
Config = Annotated[Path | None, Opt(help="TOML or JSON config file.")]
BenchData = Annotated[Path | None, Opt(help="Directory of {split}.{lang} files.")]
Json = Annotated[bool, Opt("--json", help="One JSON object.")]


def friendly(fn):
    """Turn MtxError into one line on stderr and its exit code; a traceback only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MtxError as e:
            if state["debug"]:
                raise
            typer.echo(f"mtx: error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("mtx: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def positive(**values: int | float | None) -> None:
    """Each option given (name with underscores) must be > 0."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def non_negative(**values: int | float | None) -> None:
    for name, value in values.items():
        if value is not None and value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
