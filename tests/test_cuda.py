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
    from mtx.train import loss_fn

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
