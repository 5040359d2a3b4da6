"""CUDA paths (skipped without a GPU): the same properties on the device, bf16 training steps, fused AdamW."""

import pytest
import torch
from conftest import random_batch, random_model

from mtx.search import beam_search, greedy_search

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_cached_equals_uncached_and_cpu():
    model = random_model(seed=1)
    src, mask = random_batch(6, 7, seed=2)
    cpu = beam_search(model, src, mask, beam=4, nbest=2)
    gpu_model = model.cuda()
    a = beam_search(gpu_model, src.cuda(), mask.cuda(), beam=4, nbest=2)
    b = beam_search(gpu_model, src.cuda(), mask.cuda(), beam=4, nbest=2, use_cache=False)
    assert [[t for t, _ in x] for x in a] == [[t for t, _ in x] for x in b]
    assert [[t for t, _ in x] for x in a] == [[t for t, _ in x] for x in cpu]
    g = greedy_search(gpu_model, src.cuda(), mask.cuda())
    assert [x[0][0] for x in g] == [x[0][0] for x in greedy_search(model.cpu(), src, mask)]


@cuda
def test_cuda_bf16_training_reduces_loss():
    from mtx.step import loss_fn

    model = random_model(seed=0).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
    src, mask = random_batch(16, 9, seed=1)
    src, mask = src.cuda(), mask.cuda()
    tgt = src[:, :8].clamp(min=4)
    tgt_in = torch.cat([torch.full((16, 1), 2, device="cuda"), tgt[:, :-1]], 1)
    losses = []
    for _ in range(60):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(src, mask, tgt_in)
        loss = loss_fn(logits, tgt, 0.0) / tgt.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@cuda
def test_cuda_bf16_decoding_matches_cpu(tiny_model, tiny_corpus):
    from typer.testing import CliRunner

    from mtx.cli import app

    src = (tiny_corpus / "train.de").read_text(encoding="utf-8").splitlines()[:30]
    args = ["translate", "--model", str(tiny_model), *src]
    cpu = CliRunner().invoke(app, [*args, "--device", "cpu"])
    gpu = CliRunner().invoke(app, [*args, "--device", "cuda"])
    assert gpu.exit_code == 0 and gpu.stdout == cpu.stdout


@cuda
def test_cuda_train_step_does_not_synchronise():
    """The step loop's claim: moving a pinned batch, token dropout, forward, loss, backward, clipping and the
    fused AdamW update (with its non-finite skip) never wait for the GPU; only log steps read values back."""
    from mtx.batching import collate
    from mtx.config import TrainConfig
    from mtx.step import make_optimizer, train_step

    device = torch.device("cuda")
    model = random_model(seed=0).to(device).train()
    tc = TrainConfig(src_token_dropout=0.1, tgt_token_dropout=0.1)
    opt = make_optimizer(model, tc)
    batch = collate([[5 + (i + j) % 40 for j in range(3 + i % 9)] for i in range(16)], [[6, 7, 8, 9]] * 16)
    scale = 1.0 / batch.n_tgt_tokens
    for _ in range(2):  # first steps allocate optimizer state
        train_step(model, opt, [batch.pin_memory().to(device, non_blocking=True)], scale, tc, device)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            b = batch.pin_memory().to(device, non_blocking=True)
            loss, bad = train_step(model, opt, [b], scale, tc, device)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item() and not bad.item()
