"""Training curves from `train_log.jsonl`: training loss, validation loss, validation BLEU and learning rate against
step (or minutes of training), one run or several overlaid. matplotlib draws off-screen (Agg): no display needed."""

from __future__ import annotations

import json
from pathlib import Path

from mtx.errors import MtxError, UsageError

LOG = "train_log.jsonl"


def read_log(run: Path) -> tuple[list[dict], list[dict]]:
    """(training records, validation records) of a model directory's log; a record is one JSON line, training
    ones carry `train_loss` and `lr`, validation ones `valid_loss` (and `valid_bleu`)."""
    path = run / LOG if run.is_dir() else run
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise MtxError(f"{path}: cannot read the training log ({e.strerror})") from None
    records = []
    for i, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise MtxError(f"{path}:{i}: not a JSON line ({e.msg})") from None
    return [r for r in records if "train_loss" in r], [r for r in records if "valid_loss" in r]


def plot_runs(runs: list[Path], out: Path, x: str = "step", labels: list[str] | None = None) -> Path:
    """Draw the curves of `runs` (model directories or log files) into `out` (PNG); x: "step" or "minutes"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = {"step": "step", "minutes": "train_s"}[x]
    scale = 1 / 60 if x == "minutes" else 1
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [
        (axes[0, 0], "loss", [("train_loss", "--", "training"), ("valid_loss", "o-", "validation")]),
        (axes[0, 1], "validation BLEU (greedy)", [("valid_bleu", "o-", None)]),
        (axes[1, 0], "learning rate", [("lr", "-", None)]),
        (axes[1, 1], "training tokens/s", [("tokens_per_s", "-", None)]),
    ]
    for i, run in enumerate(runs):
        train, valid = read_log(run)
        name = labels[i] if labels else (run.name if run.is_dir() else run.parent.name)
        color = f"C{i}"
        for ax, title, series in panels:
            for field, style, what in series:
                recs = [r for r in (train + valid) if field in r and key in r and "averaged" not in r]
                recs.sort(key=lambda r: r[key])
                if recs:
                    label = f"{name}: {what}" if what and len(runs) > 1 else (what or name)
                    xs, ys = [r[key] * scale for r in recs], [r[field] for r in recs]
                    ax.plot(xs, ys, style, color=color, label=label, markersize=3)
            ax.set_title(title)
    for ax in axes[1]:
        ax.set_xlabel("step" if x == "step" else "minutes of training")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


class TensorBoardLog:
    """The training log's numbers as TensorBoard scalars (`torch.utils.tensorboard`), under `train/` and `valid/`."""

    def __init__(self, out_dir: Path):
        self.writer = self.writer_class()(str(out_dir / "tensorboard"))

    @staticmethod
    def writer_class():
        """torch's SummaryWriter; a one-line error where tensorboard is not installed (asked before any data)."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError("train.tensorboard=true needs the tensorboard package (pip install tensorboard)") from None
        return SummaryWriter

    def write(self, rec: dict) -> None:
        group = "valid" if "valid_loss" in rec else "train"
        for key, value in rec.items():
            if key not in ("step", "epoch", "best") and isinstance(value, int | float):
                self.writer.add_scalar(f"{group}/{key}", value, rec["step"])
        self.writer.flush()
