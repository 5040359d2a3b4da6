"""Training: `train()` sets up a run (device, processes, resumed state, data) and a `Trainer` runs it: the step
loop, validation and best-checkpoint keeping, resumable states, the log.

The data are prepared in mtx/data/prepare.py, the update step is in step.py, when to stop and how far along
training is in budget.py, the status line and the stop flag in mtx/console.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from mtx import checkpoint, memory
from mtx.config import Config
from mtx.console import StatusLine, StopFlag
from mtx.data.prepare import Data, corpora_of, prepare_data
from mtx.data.shortlist import SHORTLIST, Shortlist, learn_shortlist
from mtx.data.tokenizer import Tokenizer
from mtx.device import resolve_device
from mtx.errors import MtxError
from mtx.models.base import build_model
from mtx.train import distributed, state
from mtx.train.averaging import WeightAverage
from mtx.train.budget import Budget
from mtx.train.cpu import blas_warning
from mtx.train.distributed import World
from mtx.train.plots import LOG, TensorBoardLog, plot_runs
from mtx.train.schedule import lr_at
from mtx.train.step import compiled, make_optimizer, train_step
from mtx.train.validate import validate

log = logging.getLogger(__name__)

FORECAST_AT = 30  # the step after which the log says how many steps the time budget buys


@dataclass
class Position:
    """Where training is: what a resumable state records besides the tensors."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: float = -math.inf
    history: list[dict] = field(default_factory=list)


def train(
    cfg: Config,
    data_dir: Path | str,
    out_dir: Path,
    resume: Path | None = None,
    should_stop: Callable[[int], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
    overwrite: bool = False,
) -> dict:
    """Train a model and tokenizer on `data_dir`, keeping the best checkpoint (by validation BLEU) in `out_dir`
    and resumable states (`state-{step}/`, `latest`) every `train.save_every` steps and when stopped.

    `resume`: a model directory (or one of its state folders) written by an earlier run; `cfg` is its saved
    config with the changes `config.check_resume` allows. `should_stop(step)`: asked at every sync point (every
    step in one process); True stops as an interrupt would. `clock`: seconds, for the time budget (tests).
    `out_dir` must be empty or the directory resumed; `overwrite` empties one that holds an earlier model."""
    started, tc = clock(), cfg.validate().train
    memory.bound_kernel_cache()
    if tc.tensorboard:
        TensorBoardLog.writer_class()  # installed? (before the data is read)
    world, _ = distributed.setup(resolve_device(tc.device))
    if not world.main:
        logging.getLogger("mtx").setLevel(logging.WARNING)  # rank 0 speaks for all
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    if world.main:
        corpora_of(data_dir, cfg.data)  # every input checked before --out is claimed (and maybe emptied)
    with state.claim(out_dir, resume, overwrite) if world.main else contextlib.nullcontext():
        return _train(cfg, data_dir, out_dir, world, resume, should_stop, clock, started)


def _train(cfg: Config, data_dir, out_dir: Path, world: World, resume, should_stop, clock, started: float) -> dict:
    tc = cfg.train
    torch.manual_seed(tc.seed)
    info, tensors, tok = {}, {}, None
    if resume is not None:
        state_dir = state.find_state(resume)
        info, tensors, proto = state.load_state(state_dir)
        tok = Tokenizer(proto)
        log.info(f"resuming from {state_dir} (step {info['step']}, epoch {info['epoch']})")
    elif tc.init:  # fine-tuning: the model's tokenizer and weights, nothing of its training
        init, tok, _, _ = checkpoint.load(Path(tc.init), "cpu")
    elif cfg.data.tokenizer:  # another model's tokenizer
        tok = Tokenizer.load(Path(cfg.data.tokenizer) / checkpoint.TOKENIZER)
    data = prepare_data(cfg, data_dir, tok, world.main, world.from_main)
    t = Trainer(cfg, out_dir, world, data, clock, info, started)
    if world.main and resume is None and cfg.data.shortlist_k:
        t.shortlist = learn_shortlist(data, cfg.data)  # written beside the checkpoint
    if resume is None and tc.init:
        t.model.load_state_dict(init.state_dict())
    if resume is not None:
        state.restore(t.model, t.opt, info, tensors, str(state_dir))
        t.avg.restore(info, tensors)
    return t.run(resumed=resume is not None, should_stop=should_stop)


class Trainer:
    """One training run: the model, optimizer and data it works on, where it is (`pos`), and the loop (`run`) with
    what it does besides the updates: the status line, validation and best-checkpoint keeping, resumable states."""

    def __init__(self, cfg: Config, out_dir: Path, world: World, data: Data, clock, info: dict, started: float):
        self.cfg, self.out_dir, self.world, self.data, self.clock = cfg, out_dir, world, data, clock
        self.device = device = world.device
        self.model = build_model(cfg.model).to(device)
        self.opt = make_optimizer(self.model, cfg.train)
        self.avg = WeightAverage(self.model, cfg.train.average, cfg.train.average_frac)
        keys = ("step", "epoch", "batch_in_epoch", "best")
        self.pos = Position(**{k: info[k] for k in keys if k in info})
        self.start = started - info.get("elapsed_s", 0.0)  # wall time of all runs, data preparation included
        self.spent = info.get("train_s", 0.0)  # training seconds of the earlier runs (the time budget counts them)
        self.eval_cost = -1.0  # seconds of the last validation (-1: none yet)
        self.status = StatusLine(enabled=world.main)
        self.tensorboard = TensorBoardLog(out_dir) if cfg.train.tensorboard and world.main else None
        self.curves = True  # drawn at every validation while matplotlib is there
        self.shortlist: Shortlist | None = None  # a new training's (shortlist.py), saved with each checkpoint
        self.stepper: torch.nn.Module = self.model  # what the update runs: under DDP and/or compiled
        # Accumulated on the device between log steps (no host sync per step).
        self.loss_sum, self.loss_tokens = torch.zeros((), device=device), torch.zeros((), device=device)
        self.nonfinite = torch.zeros((), dtype=torch.long, device=device)  # skipped updates
        self.in_a_row = torch.zeros((), dtype=torch.long, device=device)
        self.tokens, self.window_start = 0, clock()

    def run(self, resumed: bool = False, should_stop: Callable[[int], bool] | None = None) -> dict:
        """Train until the time budget, the step limit or `max_epochs` is reached, or a stop is asked; then validate
        and save; a summary of the run."""
        tc, world, pos = self.cfg.train, self.world, self.pos
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info(f"model: {n_params / 1e6:.1f}M parameters on {self.device}; batch {tc.batch_tokens} tokens")
        if self.device.type == "cpu" and world.main and (slow := blas_warning()):
            log.warning(slow)
        if world.size > 1:  # the same initial weights on every rank (same seed), then a dropout stream of its own
            torch.manual_seed(tc.seed * 1_000_003 + 7919 * world.rank + pos.step)
        self.stepper = DistributedDataParallel(self.model) if world.size > 1 else self.model  # averages gradients
        self.stepper = compiled(self.stepper) if tc.compile else self.stepper  # checkpoints come from the model
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not resumed and world.main:
            (self.out_dir / LOG).write_text("")
        if world.main:  # what was read, dropped and held out, per pair
            report = {"corpus": self.data.dir, "pairs": self.data.report}
            (self.out_dir / "data.json").write_text(json.dumps(report, indent=1) + "\n")
        final_evals = 2 if tc.average else 1
        budget = Budget(tc.time_budget_min, tc.max_steps, tc.max_epochs, self.clock, self.spent, final_evals)
        last_eval = pos.step if resumed else -1
        stop_reason: str | None = None
        with StopFlag() as stop:
            log.info("training (Ctrl-C or SIGTERM: save a resumable state, validate and stop)")
            while stop_reason is None:
                if pos.epoch >= tc.max_epochs:
                    stop_reason = "max_epochs"
                    break
                stop_reason, last_eval = self._epoch(budget, stop, should_stop, last_eval)
            self.finish(budget, stop_reason, last_eval, stop)  # a stop asked now skips to the save
        distributed.close(world)
        return {
            "steps": pos.step,
            "epochs": pos.epoch,
            "stop": stop_reason,
            "train_minutes": round(budget.elapsed() / 60, 2),  # what the time budget counts
            "total_minutes": round((self.clock() - self.start) / 60, 2),  # data and tokenizer too
            "best_valid": pos.best,
            "nonfinite_steps": int(self.nonfinite),
            "out": str(self.out_dir),
            "history": pos.history,
        }

    def _epoch(self, budget: Budget, stop: StopFlag, should_stop, last_eval: int) -> tuple[str | None, int]:
        """The rest of the current epoch's updates, or fewer when training stops: (why it stopped or None, the step
        of the last validation)."""
        tc, pos, data = self.cfg.train, self.pos, self.data
        per_update = self.world.size * tc.accum  # batches one update consumes, over all ranks
        sync_every = 1 if self.world.size == 1 else tc.log_every  # under torchrun, agreeing costs a collective
        batches = data.train.epoch(pos.epoch)
        while pos.batch_in_epoch + per_update <= len(batches):  # an epoch's last, partial update is dropped
            if pos.step % sync_every == 0:  # every rank: the same clock, the same decision
                asked = stop.set or (should_stop is not None and should_stop(pos.step))
                if reason := self.sync(budget, asked):
                    return reason, last_eval
            if budget.steps_done(pos.step):
                return "max_steps", last_eval
            frac = budget.progress(pos.step, pos.epoch + pos.batch_in_epoch / len(batches))
            lr = lr_at(pos.step, frac, tc.lr, tc.warmup_steps, tc.schedule, tc.min_lr_ratio)
            self.update(batches[pos.batch_in_epoch : pos.batch_in_epoch + per_update], lr)
            pos.step += 1
            pos.batch_in_epoch += per_update
            if pos.step == FORECAST_AT and self.world.main and budget.seconds > 0 and budget.step_s > 0:
                steps = pos.step + int((budget.seconds - budget.reserve() - budget.elapsed()) / budget.step_s)
                log.info(f"at {budget.step_s:.2f} s a step, the {budget.seconds / 60:g}-minute budget buys about "
                         f"{steps} steps")  # fmt: skip
            if self.avg.due(frac):
                self.avg.add(pos.step)
            data.train.release()  # resident memory: the index, not the memory-mapped corpus read so far
            if pos.step % 10 == 0:
                memory.trim()  # nor freed heap blocks
            if pos.step % tc.log_every == 0:
                self.report(lr, budget)
            if pos.step % tc.eval_every == 0:
                self.validate_and_save(budget)
                last_eval = pos.step
            if tc.save_every and pos.step % tc.save_every == 0:
                self.save_state(budget)
        pos.epoch += 1
        pos.batch_in_epoch = 0
        return None, last_eval

    def update(self, group: list[np.ndarray], lr: float) -> None:
        """One optimizer update on this rank's share of `group` (the batches of the update over all ranks)."""
        tc, w, data = self.cfg.train, self.world, self.data
        mine_idx = group[w.rank * tc.accum : (w.rank + 1) * tc.accum]
        mine = [data.train.collate(idx) for idx in mine_idx]
        n_tgt = sum(data.train.n_tgt(idx) for idx in mine_idx)  # from the lengths, not the padded batch
        self.tokens += n_tgt + sum(int(b.src_mask.sum()) for b in mine)
        scale = w.size / sum(data.train.n_tgt(idx) for idx in group)  # 1 / tokens of the whole update
        if self.device.type == "cuda":
            mine = [b.pin_memory().to(self.device, non_blocking=True) for b in mine]
        for g in self.opt.param_groups:
            g["lr"] = lr
        loss, bad = train_step(self.stepper, self.opt, mine, scale, tc, self.device)
        self.nonfinite += bad
        self.in_a_row = (self.in_a_row + 1) * bad
        self.loss_sum += torch.where(bad, 0.0, loss)
        self.loss_tokens += torch.where(bad, 0, n_tgt)  # a skipped update counts neither loss nor tokens

    def report(self, lr: float, budget: Budget) -> None:
        """At a log step: stop if training diverged, show the status line, start a new window."""
        step, tc = self.pos.step, self.cfg.train
        if int(self.in_a_row) >= tc.max_nonfinite:
            raise MtxError(
                f"training diverged: {int(self.in_a_row)} non-finite losses in a row at step {step} "
                f"(try a lower train.lr); the best model so far is in {self.out_dir}"
            )
        now, left = self.clock(), max(budget.left(), 0.0)
        loss = float(self.loss_sum) / max(float(self.loss_tokens), 1.0)
        tps = self.tokens / max(now - self.window_start, 1e-9)
        left_s = "" if math.isinf(left) else f" | {int(left // 60):02d}:{int(left % 60):02d} left"
        self.status.show(
            f"step {step} | ep {self.pos.epoch} | loss {loss:.3f} | lr {lr:.2e} | {tps / 1000:.1f}k tok/s{left_s}"
        )
        rec = {"step": step, "epoch": self.pos.epoch, "train_s": round(budget.elapsed(), 1), "train_loss": loss}
        self.write_log(rec | {"lr": lr, "tokens_per_s": round(tps * self.world.size, 1), "rss_mb": memory.rss_mb()})
        self.loss_sum.zero_()
        self.loss_tokens.zero_()
        self.tokens, self.window_start = 0, now

    def sync(self, budget: Budget, asked: bool) -> str | None:
        """At a sync point, on every rank: adopt rank 0's clock and validation cost; "interrupted" if any rank was
        asked to stop, "time_budget" if the time is up, else None."""
        elapsed, eval_cost, asked = self.world.agree(budget.elapsed(), self.eval_cost, asked)
        budget.sync(self.pos.step, elapsed, eval_cost if eval_cost >= 0 else None)
        if asked:
            self.status.close()
            log.info(f"interrupted at step {self.pos.step}: saving a resumable state, validating, saving")
            return "interrupted"
        return "time_budget" if budget.time_up() else None

    def finish(self, budget: Budget, stop_reason: str, last_eval_step: int, stop: StopFlag) -> None:
        """After the last step: validate the final weights (and the weight average) and save the state; a stop
        asked meanwhile (Ctrl-C, SIGTERM) skips what is left of the validations, never the save."""
        step = self.pos.step
        if step == 0 and stop_reason != "interrupted":
            raise MtxError("training stopped before the first step (time budget too small?)")
        if stop_reason == "interrupted":
            self.save_state(budget)  # first, in case the validation is interrupted too (a second Ctrl-C)

        def asked_now() -> bool:  # a stop asked after the loop ended (the first: a second one stops at once)
            return stop.set and stop_reason != "interrupted"

        if last_eval_step != step and not asked_now():
            self.validate_and_save(budget)
        if self.avg.count and stop_reason != "interrupted" and not asked_now():
            self.avg.add_final(step)
            self.validate_and_save(budget, averaged=self.avg.count)
        self.save_state(budget)
        self.status.close()

    def draw_curves(self) -> None:
        """MODEL/curves.png from the log; without matplotlib (a bare GPU machine), say so once and go on."""
        if self.curves:
            try:
                plot_runs([self.out_dir], self.out_dir / "curves.png")
            except ImportError as e:
                self.curves = False
                log.info(f"curves.png skipped: {e}")

    def write_log(self, rec: dict) -> None:
        """One JSON line in the training log (rank 0): training records at log steps, validations."""
        if self.world.main:
            with open(self.out_dir / LOG, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.write(rec)

    def save_state(self, budget: Budget) -> None:
        if not self.world.main:
            return
        p, (avg_info, avg_tensors) = self.pos, self.avg.state()
        info = {"step": p.step, "epoch": p.epoch, "batch_in_epoch": p.batch_in_epoch, "best": p.best, **avg_info}
        info |= {"elapsed_s": self.clock() - self.start, "train_s": budget.elapsed(), "config": self.cfg.to_dict()}
        proto, keep = self.data.tokenizer.proto, self.cfg.train.keep_last
        state.save_state(self.out_dir, self.model, self.opt, proto, info, keep, avg_tensors)

    def validate_and_save(self, budget: Budget, averaged: int = 0) -> None:
        """Validate the weights (or, with `averaged`, the average of that many snapshots) on rank 0 and save them
        as the checkpoint if they score best; the other ranks go on to the next collective and wait."""
        if not self.world.main:
            return
        t0, p = self.clock(), self.pos
        with self.avg.applied() if averaged else contextlib.nullcontext():
            stats = validate(self.model, self.data, self.cfg, self.device)
            stats |= {"averaged": averaged} if averaged else {}
            score = stats.get("valid_bleu", -stats["valid_loss"])
            improved = score > p.best
            if improved or (not self.cfg.train.keep_best and not averaged):
                p.best = max(p.best, score)
                meta = {"step": p.step, "epoch": p.epoch, **stats, "corpus": str(self.data.dir)}
                checkpoint.save(self.out_dir, self.model, self.data.tokenizer, self.cfg, meta)
                if self.shortlist is not None:
                    self.shortlist.write(self.out_dir / SHORTLIST, self.data.tokenizer)
                    self.shortlist = None  # once is enough
        rec = {"step": p.step, "epoch": p.epoch, "elapsed_s": round(self.clock() - self.start, 1)}
        rec |= {"train_s": round(budget.elapsed(), 1), **stats, "best": improved}
        p.history.append(rec)
        self.write_log(rec)
        self.draw_curves()
        self.eval_cost = self.clock() - t0
        self.status.close()
        log.info("eval " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
