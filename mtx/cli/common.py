"""What the commands share: a user's mistake as one line and an exit code, the options several commands take."""

import functools
from pathlib import Path

import typer
from typer import Option as Opt

from mtx.errors import MtxError

DEFAULT_MODEL = Path("checkpoints/multi30k-de-en")
state = {"debug": False}

MODEL = Opt(DEFAULT_MODEL, help="Model directory.")
MODELS = Opt([DEFAULT_MODEL], "--model", help="Model directory; again for an ensemble of several (one tokenizer).")
DEVICE = Opt("auto", help="auto, cpu or cuda.")
MODEL_BEAM = Opt(None, help="Beam size (1 = greedy).", show_default="the model's, 5")
ALPHA = Opt(None, help="Length penalty exponent (GNMT; 0 = none).", show_default="the model's")
BATCH_TOKENS = Opt(None, help="Tokens per decoding batch.")
ENGINE = Opt("mtx", help="mtx (its own search) or ct2 (CTranslate2; exports on first use).")
NO_REPEAT = Opt(None, help="No n-gram of this size twice in a translation (0: off).", show_default="the model's, 4")
REPETITION_PENALTY = Opt(None, help="Penalty on tokens already output (CTRL; 1: off, 1.2: usual).",
                         show_default="the model's, 1")  # fmt: skip
PRECISION = Opt(None, help="fp32; int8 (int8 linear layers, CPU; ct2: its int8); bf16 / fp16 autocast.",
                show_default="the model's, fp32")  # fmt: skip
SHORTLIST = Opt(None, "--shortlist/--no-shortlist", help="Score only the target pieces the sources call for "
                "(MODEL/shortlist.txt; mtx shortlist).", show_default="the model's, off")  # fmt: skip
GLOSSARY = Opt(None, help="TSV: source term<TAB>target term. A term found in a line: its translation is in the output.")
CONFIG = Opt(None, help="TOML or JSON config file.")
BENCH_DATA = Opt(None, help="Directory of {split}.{lang} files.")


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
