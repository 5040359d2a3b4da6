"""`mtx train`."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer

from mtx.cli.common import DEFAULT_MODEL, Config, Device, Opt, friendly, positive
from mtx.config import overrides, resumed_config
from mtx.data.multi30k import ensure_data_dir
from mtx.data.pairs import languages, pairs_of
from mtx.data.sources import data_spec
from mtx.device import resolve_device
from mtx.errors import UsageError
from mtx.train import distributed
from mtx.train.loop import train as run_training
from mtx.train.presets import configure
from mtx.train.state import find_state, load_state, model_dir_of

DATA_HELP = (
    "A directory of {split}.{lang} files, a TSV/CSV/JSONL/Parquet file (or a directory of {split}.EXT), a "
    "save_to_disk directory, or hf:NAME[:CONFIG]."
)
RESUME_HELP = "Continue the training saved in this model directory (or from one of its state-N folders)."
PAIRS_HELP = "Several directions in one model, e.g. de-en,en-de (instead of --src/--tgt)."
BUDGET_HELP = "Minutes of training (from the first step, validation included; 0: no limit)."


@friendly
def train(
    data: Annotated[str | None, Opt(help=DATA_HELP, show_default="data.path, $MTX_DATA or Multi30k")] = None,
    src: Annotated[str | None, Opt(help="Source language code.", show_default="de")] = None,
    tgt: Annotated[str | None, Opt(help="Target language code.", show_default="en")] = None,
    pairs: Annotated[str | None, Opt(help=PAIRS_HELP)] = None,
    out: Annotated[Path, Opt(help="Model directory to write.")] = DEFAULT_MODEL,
    config: Config = None,
    set_: Annotated[list[str] | None, Opt("--set", help="Override, e.g. model.d_model=256.")] = None,
    time_budget: Annotated[float | None, Opt(help=BUDGET_HELP)] = None,
    device: Device = "auto",
    resume: Annotated[Path | None, Opt(help=RESUME_HELP)] = None,
    accum: Annotated[int | None, Opt(help="Batches per update on each process (gradient accumulation).")] = None,
    compile_: Annotated[
        bool, Opt("--compile", help="torch.compile the training step (slower start; did not pay on CPU).")
    ] = False,
    gpus: Annotated[int, Opt(help="Train on this many GPUs of this machine (runs itself under torchrun).")] = 1,
) -> None:
    """Train a tokenizer and a Transformer (--set model.arch=rnn: an RNN); keep the best checkpoint in --out."""
    positive(gpus=gpus)
    if gpus > 1 and not distributed.launched():
        if (found := torch.cuda.device_count()) < gpus:
            raise UsageError(f"--gpus {gpus}: this machine has {found} CUDA device(s); on CPUs use torchrun directly")
        raise typer.Exit(subprocess.run(distributed.launch_command(gpus, sys.argv[1:])).returncode)
    dev = resolve_device(device)
    if pairs is not None and (src is not None or tgt is not None):
        raise UsageError("--pairs names every direction: leave out --src and --tgt")
    flags = {"train.device": dev.type, "data.src": src, "data.tgt": tgt, "train.accum": accum, "data.pairs": pairs}
    flags |= {"data.path": data, "train.compile": True if compile_ else None, "train.time_budget_min": time_budget}
    if resume is None:
        cfg = configure(config, overrides(set_, flags), dev.type)
    else:
        cfg = resumed_config(load_state(find_state(resume))[0]["config"], config, overrides(set_, flags), str(resume))
        out = model_dir_of(resume) if out == DEFAULT_MODEL else out
    directions = pairs_of(cfg.data)
    spec = data_spec(None, cfg.data) or ensure_data_dir(tuple(languages(directions)))
    logging.getLogger("mtx").info(f"training {', '.join(f'{s}->{t}' for s, t in directions)} on {spec} -> {out}")
    summary = run_training(cfg, spec, out, resume=resume)
    summary.pop("history")
    typer.echo(json.dumps(summary))
