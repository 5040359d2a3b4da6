"""Training: data preparation, the step loop, validation, best-checkpoint keeping, time budget (the step itself is
in `mtx/step.py`)."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from mtx import averaging, checkpoint, distributed, train_state
from mtx.averaging import WeightAverage
from mtx.batching import TrainBatches, collate, sorted_batches
from mtx.config import Config
from mtx.corpus import Split, load_split
from mtx.errors import MtxError, UsageError
from mtx.metrics import bleu
from mtx.model import Transformer
from mtx.schedule import lr_at
from mtx.search import greedy_search
from mtx.step import autocast, compiled, loss_fn, make_optimizer, resolve_device, train_step
from mtx.tokenizer import Tokenizer


@dataclass
class Data:
    tokenizer: Tokenizer
    train: TrainBatches
    valid: Split
    valid_src: list[list[int]]
    valid_tgt: list[list[int]]


def prepare_data(cfg: Config, data_dir: Path, log: Callable[[str], None], tok: Tokenizer | None = None) -> Data:
    """Read and validate train/valid, train the tokenizer (unless given, as on resume), encode, filter."""
    d = cfg.data
    train = load_split(data_dir, d.train_split, d.src, d.tgt)
    valid = load_split(data_dir, d.valid_split, d.src, d.tgt)
    t0 = time.time()
    if tok is None:
        tok = Tokenizer.train(train.src + train.tgt, cfg.model.vocab_size, d.spm_model_type, d.spm_character_coverage)
        cfg.model.vocab_size = len(tok)
    src, tgt = tok.encode(train.src), tok.encode(train.tgt)
    keep = [i for i in range(len(src)) if len(src[i]) < d.max_tokens and len(tgt[i]) < d.max_tokens]
    if len(keep) < len(src):
        log(f"filtered {len(src) - len(keep)} of {len(src)} training pairs longer than {d.max_tokens} pieces")
    src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
    log(f"tokenizer: {len(tok)} pieces ({time.time() - t0:.1f}s); {len(src)} training pairs")
    limit = cfg.model.max_len - 1
    vs = [x[:limit] for x in tok.encode(valid.src)]
    vt = [x[:limit] for x in tok.encode(valid.tgt)]
    return Data(tok, TrainBatches(src, tgt, cfg.train.batch_tokens, cfg.train.seed), valid, vs, vt)


@torch.no_grad()
def validate(model: Transformer, data: Data, cfg: Config, device, amp) -> dict[str, float]:
    """Validation loss (no label smoothing) on all of `valid`, greedy BLEU on its first eval_bleu_sents (-1: all)."""
    model.eval()
    lengths = [max(len(a), len(b)) + 1 for a, b in zip(data.valid_src, data.valid_tgt, strict=True)]
    total, n = torch.zeros((), device=device), 0
    for idx in sorted_batches(lengths, cfg.train.batch_tokens * 2):
        b = collate([data.valid_src[i] for i in idx], [data.valid_tgt[i] for i in idx]).to(device)
        with autocast(device, amp):
            logits = model(b.src, b.src_mask, b.tgt_in)
        total += loss_fn(logits, b.tgt_out, 0.0)
        n += b.n_tgt_tokens
    out = {"valid_loss": float(total) / n}
    k = len(data.valid_src) if cfg.train.eval_bleu_sents < 0 else min(cfg.train.eval_bleu_sents, len(data.valid_src))
    if k:
        hyps = [""] * k
        budget = 50_000 if device.type == "cuda" else 4000
        for idx in sorted_batches([len(x) + 1 for x in data.valid_src[:k]], budget):
            b = collate([data.valid_src[i] for i in idx]).to(device)
            with autocast(device, amp):
                res = greedy_search(model, b.src, b.src_mask, cfg.decode.max_len_a, cfg.decode.max_len_b)
            for i, text in zip(idx, data.tokenizer.decode([r[0][0] for r in res]), strict=True):
                hyps[i] = text
        out["valid_bleu"] = bleu(hyps, data.valid.tgt[:k])
    model.train()
    return out


class Progress:
    """A status line on stderr (step, epoch, loss, lr, tokens/s, time left), redrawn in place on a terminal;
    elsewhere (a log file) every `every`-th update is printed as a line."""

    def __init__(self, every: int = 10, enabled: bool = True):
        self.tty = enabled and sys.stderr.isatty()
        self.every, self.calls = (every if enabled else 0), 0

    def show(self, text: str) -> None:
        self.calls += 1
        if self.tty:
            print("\r" + text.ljust(110), end="", file=sys.stderr, flush=True)
        elif self.every and self.calls % self.every == 0:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def _quiet(_: str) -> None:
    """The log of ranks other than 0."""


class StopFlag:
    """SIGINT/SIGTERM set a flag that the loop reads between steps, so no step is cut in half;
    a second Ctrl-C stops at once."""

    def __init__(self):
        self.set = False
        self.saved: dict = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def train(
    cfg: Config,
    data_dir: Path,
    out_dir: Path,
    log: Callable[[str], None] = print,
    resume: Path | None = None,
    should_stop: Callable[[int], bool] | None = None,
) -> dict:
    """Train a model and tokenizer on `data_dir`, keeping the best checkpoint (by validation BLEU) in `out_dir`
    and resumable states (`state-{step}/`, `latest`) every `train.save_every` steps and when stopped.

    `resume`: a directory written by an earlier run; `cfg` must be the config saved there (plus overrides).
    `should_stop(step)`: asked after every step; True stops as an interrupt would (used by tests)."""
    tc = cfg.train
    start = time.time()
    budget = tc.time_budget_min * 60.0
    if tc.time_budget_min < 0 or tc.batch_tokens <= 0 or tc.lr <= 0 or tc.eval_every <= 0:
        raise UsageError("train: time_budget_min >= 0, batch_tokens > 0, lr > 0 and eval_every > 0 are required")
    if tc.accum < 1:
        raise UsageError("train.accum must be >= 1")
    if not (0 <= tc.src_token_dropout < 1 and 0 <= tc.tgt_token_dropout < 1):
        raise UsageError("train.src_token_dropout and train.tgt_token_dropout must be in [0, 1)")
    averaging.check(tc.average, tc.average_frac)  # before the data is read
    world, device = distributed.setup(resolve_device(tc.device))
    if not world.main:
        log = _quiet
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    info, tensors, tok = {}, {}, None
    if resume is not None:
        state_dir = train_state.find_state(resume)
        info, tensors, proto = train_state.load_state(state_dir)
        tok = Tokenizer(proto)
        log(f"resuming from {state_dir} (step {info['step']}, epoch {info['epoch']})")
    data = prepare_data(cfg, data_dir, log, tok)
    model = Transformer(cfg.model).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.1f}M parameters on {device}; batch {tc.batch_tokens} tokens")
    opt = make_optimizer(model, tc)
    avg = WeightAverage(model, tc.average, tc.average_frac)
    if resume is not None:
        train_state.restore(model, opt, info, tensors)
        avg.restore(info, tensors)
        start -= info.get("elapsed_s", 0.0)  # the earlier runs' time counts too
    # Under torchrun, DDP averages gradients over ranks (the same initial weights: same seed everywhere).
    stepper = DistributedDataParallel(model) if world.size > 1 else model
    stepper = compiled(stepper) if tc.compile else stepper  # checkpoints still come from `model`
    per_update = world.size * tc.accum  # batches one update consumes, over all ranks
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "train_log.jsonl"
    if resume is None and world.main:
        log_path.write_text("")
    progress = Progress(enabled=world.main)

    step, epoch, batch_in_epoch = info.get("step", 0), info.get("epoch", 0), info.get("batch_in_epoch", 0)
    best = info.get("best", -math.inf)
    loss_sum = torch.zeros((), device=device)
    nonfinite = torch.zeros((), dtype=torch.long, device=device)  # skipped updates
    in_a_row = torch.zeros((), dtype=torch.long, device=device)
    tok_window, loss_tokens, window_start = 0, 0, time.time()
    eval_cost = 0.0
    train_start = time.time() - info.get("train_s", 0.0)
    stop_reason = "max_epochs"
    last_eval_step = step if resume is not None else -1
    history = []

    def deadline_left() -> float:
        """Seconds left of the time budget, which counts training (steps, validations, saves) from the first step,
        over all runs of a resumed training; reading data and training the tokenizer come before it."""
        return math.inf if budget <= 0 else budget - (time.time() - train_start)

    def agreed(flag: bool) -> bool:
        """One process: `flag`. Under torchrun, every rank agrees (an all-reduce, so a host sync) only at log
        steps; in between, no rank stops."""
        if world.size == 1:
            return flag
        return step % tc.log_every == 0 and world.any(flag)

    def done_frac(n_batches: int) -> float:
        """The fraction of training done (0..1): of the time budget or step limit, whichever is further; with
        neither, of max_epochs."""
        if not budget and not tc.max_steps:
            return (epoch + batch_in_epoch / max(n_batches, 1)) / tc.max_epochs
        frac = step / tc.max_steps if tc.max_steps else 0.0
        if budget > 0:
            frac = max(frac, (time.time() - train_start) / max(budget - 10, 1.0))
        return frac

    def save_state() -> None:
        avg_info, avg_tensors = avg.state()
        state = {
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "best": best,
            "elapsed_s": time.time() - start,
            "train_s": time.time() - train_start,
            "config": cfg.to_dict(),
            **avg_info,
        }
        if world.main:
            train_state.save_state(out_dir, model, opt, data.tokenizer.proto, state, tc.keep_last, avg_tensors)

    def run_eval(averaged: int = 0) -> None:
        """Validate the model's weights (or, with `averaged`, the weight average of that many snapshots) and keep
        them as the checkpoint if they score best."""
        nonlocal best, eval_cost, last_eval_step
        t0 = time.time()
        with avg.applied() if averaged else contextlib.nullcontext():
            stats = validate(model, data, cfg, device, tc.amp)
            if averaged:
                stats["averaged"] = averaged
            score = stats.get("valid_bleu", -stats["valid_loss"])
            improved = score > best
            if improved or (not tc.keep_best and not averaged):
                best = max(best, score)
                meta = {"step": step, "epoch": epoch, **stats}
                if world.main:
                    checkpoint.save(out_dir, model, data.tokenizer, cfg, meta)
        eval_cost = time.time() - t0
        now = time.time()
        rec = {"step": step, "epoch": epoch, "elapsed_s": round(now - start, 1), "train_s": round(now - train_start, 1)}
        rec.update(**stats, best=improved)
        history.append(rec)
        if world.main:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        progress.close()
        shown = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items())
        log(f"eval {shown}")
        last_eval_step = step

    model.train()
    with StopFlag() as stop:
        while epoch < tc.max_epochs and stop_reason == "max_epochs":
            batches = data.train.epoch(epoch)
            while batch_in_epoch + per_update <= len(batches):  # an epoch's last, partial update is dropped
                # Reserve time for the final validations (the weights, the average) and save.
                if agreed(deadline_left() < (3 if avg.snapshots else 2) * eval_cost + 5):
                    stop_reason = "time_budget"
                    break
                if tc.max_steps and step >= tc.max_steps:
                    stop_reason = "max_steps"
                    break
                group = batches[batch_in_epoch : batch_in_epoch + per_update]
                mine_idx = group[world.rank * tc.accum : (world.rank + 1) * tc.accum]
                mine = [data.train.collate(idx) for idx in mine_idx]
                n_tgt = sum(data.train.n_tgt(idx) for idx in mine_idx)  # from the lengths, not the padded batch
                n_tok = n_tgt + sum(int(b.src_mask.sum()) for b in mine)
                scale = world.size / sum(data.train.n_tgt(idx) for idx in group)  # 1 / tokens of the whole update
                if device.type == "cuda":
                    mine = [b.pin_memory().to(device, non_blocking=True) for b in mine]
                frac = done_frac(len(batches))
                lr = lr_at(step, frac, tc.lr, tc.warmup_steps, tc.schedule, tc.min_lr_ratio)
                for g in opt.param_groups:
                    g["lr"] = lr
                loss, bad = train_step(stepper, opt, mine, scale, tc, device)
                step += 1
                if avg.due(frac):
                    avg.add(step)
                batch_in_epoch += per_update
                nonfinite += bad
                in_a_row = (in_a_row + 1) * bad
                loss_sum += torch.where(bad, 0.0, loss)
                loss_tokens += n_tgt
                tok_window += n_tok
                if step % tc.log_every == 0:
                    if int(in_a_row) >= tc.max_nonfinite:
                        raise MtxError(
                            f"training diverged: {int(in_a_row)} non-finite losses in a row at step {step} "
                            f"(try a lower train.lr); the best model so far is in {out_dir}"
                        )
                    now = time.time()
                    tps = tok_window / max(now - window_start, 1e-9)
                    left = deadline_left()
                    left_s = "" if math.isinf(left) else f" | {int(left // 60):02d}:{int(left % 60):02d} left"
                    progress.show(
                        f"step {step} | ep {epoch} | loss {float(loss_sum) / loss_tokens:.3f} | lr {lr:.2e} | "
                        f"{tps / 1000:.1f}k tok/s{left_s}"
                    )
                    loss_sum.zero_()
                    loss_tokens, tok_window, window_start = 0, 0, now
                if step % tc.eval_every == 0:
                    run_eval()
                if tc.save_every and step % tc.save_every == 0:
                    save_state()
                if agreed(stop.set or (should_stop is not None and should_stop(step))):
                    stop_reason = "interrupted"
                    progress.close()
                    log(f"interrupted at step {step}: saving a resumable state, validating, saving")
                    break
            else:
                epoch += 1
                batch_in_epoch = 0
    if step == 0:
        raise MtxError("training stopped before the first step (time budget too small?)")
    if stop_reason == "interrupted":
        save_state()  # first, in case the validation is interrupted too
    if last_eval_step != step:
        run_eval()
    if avg.count and stop_reason != "interrupted":
        avg.add_final(step)
        run_eval(averaged=avg.count)
    save_state()
    progress.close()
    distributed.close(world)
    return {
        "steps": step,
        "epochs": epoch,
        "stop": stop_reason,
        "train_minutes": round((time.time() - train_start) / 60, 2),  # what the time budget counts
        "total_minutes": round((time.time() - start) / 60, 2),  # data and tokenizer too
        "best_valid": best,
        "nonfinite_steps": int(nonfinite),
        "out": str(out_dir),
        "history": history,
    }
