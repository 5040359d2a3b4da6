"""One optimisation step on a device: attention kernel, precision, loss, optimizer, clipping.

Kept apart from the loop (loop.py) so that the benchmark and the tests run exactly the step training runs.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from mtx.config import TrainConfig
from mtx.data.batching import Batch, drop_tokens
from mtx.data.tokenizer import PAD
from mtx.device import autocast
from mtx.train.loss import smoothed_cross_entropy


def attention_kernel(device: torch.device):
    """On CPU, SDPA's math backend: its backward is ~8x faster there than the fused CPU kernel's for short
    sentences (measured on a 2-core EPYC, bf16). On CUDA, let SDPA pick its flash/efficient kernels."""
    if device.type == "cpu":
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def loss_fn(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Summed label-smoothed cross-entropy over real target tokens."""
    return smoothed_cross_entropy(logits.flatten(0, 1), target.flatten(), smoothing, PAD)


def rdrop_loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float, weight: float):
    """R-Drop on the logits of a batch stacked twice (2B, T, V): (the two passes' mean summed cross-entropy, what
    is minimised: that plus `weight` times their symmetric KL divergence, summed over real target tokens)."""
    a, b = logits.chunk(2)
    ce = (loss_fn(a, target, smoothing) + loss_fn(b, target, smoothing)) / 2
    la, lb = F.log_softmax(a.float(), -1), F.log_softmax(b.float(), -1)
    kl = 0.5 * ((la.exp() * (la - lb)).sum(-1) + (lb.exp() * (lb - la)).sum(-1))  # (B, T)
    return ce, ce + weight * kl.masked_fill(target == PAD, 0.0).sum()


def compiled(model: torch.nn.Module, backend: str = "inductor") -> torch.nn.Module:
    """`torch.compile` with dynamic shapes, so that batches of other sizes reuse the graph instead of
    recompiling; only the training forward/backward goes through it (validation and search run eagerly)."""
    return torch.compile(model, dynamic=True, backend=backend)


def make_optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    """Fused AdamW in two groups: matrices (embeddings included), decayed by `weight_decay`, and 1-D tensors
    (biases, norm gains), decayed only with `decay_1d`. Fused AdamW (CPU and CUDA) skips its update when
    `opt.found_inf` is set: non-finite steps cost no host sync."""
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": tc.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": tc.weight_decay if tc.decay_1d else 0.0},
    ]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=tc.betas, eps=1e-9, fused=True)


def clip_grad_norm(params, max_norm: float) -> torch.Tensor:
    """Scale gradients so that their global L2 norm is at most `max_norm` (0: no clipping); return the norm before.
    What `torch.nn.utils.clip_grad_norm_` computes, in a few multi-tensor kernels and no per-parameter calls (on a
    GPU the host's time per step is what bounds small batches)."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if max_norm > 0:
        torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm


def train_step(
    model, opt, batches: list[Batch], scale: float, tc: TrainConfig, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """One update from micro-batches already on `device` (gradients accumulated; under DDP synchronised once, at
    the last). The summed loss is multiplied by `scale` (1 / the update's target tokens, times the world size
    under DDP, which averages gradients). Returns (summed loss, non-finite flag), both on the device; a
    non-finite loss or gradient norm leaves parameters and optimizer moments untouched. With `tc.rdrop`, the loss
    returned is the cross-entropy (the KL term is minimised, not reported)."""
    opt.zero_grad(set_to_none=True)
    total = torch.zeros((), device=device)
    for i, batch in enumerate(batches):
        last = i == len(batches) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(device, tc.amp), attention_kernel(device):
                src = drop_tokens(batch.src, tc.src_token_dropout)
                tgt_in = drop_tokens(batch.tgt_in, tc.tgt_token_dropout)
                if tc.rdrop > 0:  # one forward of the batch twice over: two dropout masks
                    logits = model(torch.cat([src, src]), torch.cat([batch.src_mask] * 2), torch.cat([tgt_in] * 2))
                else:
                    logits = model(src, batch.src_mask, tgt_in)
            if tc.rdrop > 0:
                loss, objective = rdrop_loss(logits, batch.tgt_out, tc.label_smoothing, tc.rdrop)
            else:
                loss = objective = loss_fn(logits, batch.tgt_out, tc.label_smoothing)
            (objective * scale).backward()
        total = total + loss.detach()
    norm = clip_grad_norm(model.parameters(), tc.clip_norm)
    bad = ~(torch.isfinite(total) & torch.isfinite(norm))  # no host sync
    opt.found_inf = bad.float()
    opt.step()
    return total, bad
