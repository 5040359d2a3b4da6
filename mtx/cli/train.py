"""`mtx train`."""

import json
from pathlib import Path

import typer
from typer import Option as Opt

from mtx.cli import common as o
from mtx.specs import JOIN
from mtx.train.distributed import relaunch_on_gpus
from mtx.train.loop import train as run_training
from mtx.train.presets import training_config
from mtx.train.state import model_dir_of

DATA = (
    "A directory of {split}.{lang} files, a TSV/CSV/JSONL/Parquet file (or a directory of {split}.EXT), a "
    "save_to_disk directory, or hf:NAME[:CONFIG]; ,weight=W and ,tag=NAME after it; again for another corpus."
)
BUDGET = "Minutes of training (from the first step, validation included; 0: no limit)."
COMPILE = "torch.compile the training step (slower start; did not pay on CPU)."
RESUME = "Continue the training saved in this model directory (or from one of its state-N folders)."


def train(
    data: list[str] | None = Opt(None, help=DATA, show_default="data.path, $MTX_DATA or Multi30k"),
    src: str | None = Opt(None, help="Source language code.", show_default="de"),
    tgt: str | None = Opt(None, help="Target language code.", show_default="en"),
    pairs: str | None = Opt(None, help="Several directions in one model, e.g. de-en,en-de (instead of --src/--tgt)."),
    out: Path = Opt(o.DEFAULT_MODEL, help="Model directory to write."),
    config: Path | None = o.CONFIG,
    set_: list[str] | None = Opt(None, "--set", help="Override, e.g. model.d_model=256."),
    time_budget: float | None = Opt(None, help=BUDGET),
    device: str = o.DEVICE,
    resume: Path | None = Opt(None, help=RESUME),
    init: Path | None = Opt(None, help="Fine-tune: start from this model's weights and tokenizer (fresh optimizer)."),
    tokenizer: Path | None = Opt(None, help="Use this model's tokenizer (for an ensemble with it)."),
    accum: int | None = Opt(None, help="Batches per update on each process (gradient accumulation)."),
    compile_: bool = Opt(False, "--compile", help=COMPILE),
    gpus: int = Opt(1, help="Train on this many GPUs of this machine (runs itself under torchrun)."),
    overwrite: bool = Opt(False, help="Empty a --out that holds an earlier model first (else it is refused)."),
) -> None:
    """Train a tokenizer and a Transformer (--set model.arch=rnn: an RNN); keep the best checkpoint in --out."""
    relaunch_on_gpus(gpus)
    options = {"data.src": src, "data.tgt": tgt, "train.accum": accum, "data.pairs": pairs}
    options["data.path"] = JOIN.join(data) if data else None
    options |= {"train.compile": True if compile_ else None, "train.time_budget_min": time_budget}
    options["train.init"], options["data.tokenizer"] = (None if x is None else str(x) for x in (init, tokenizer))
    out = model_dir_of(resume) if resume is not None and out == o.DEFAULT_MODEL else out
    cfg, spec = training_config(device, config, set_, options, resume, out)
    summary = run_training(cfg, spec, out, resume=resume, overwrite=overwrite)
    summary.pop("history")
    typer.echo(json.dumps(summary))
