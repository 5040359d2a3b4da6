"""CUDA paths (skipped without a GPU): the same properties on the device, bf16 training steps, fused AdamW."""

import dataclasses

import pytest
import torch
from conftest import ARCH_IDS, ARCHS, random_batch, random_model

from mtx.decode.search import beam_search, greedy_search

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_cuda_cached_equals_uncached_and_cpu(arch):
    model = random_model(seed=1, **arch)
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
@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_cuda_bf16_training_reduces_loss(arch):
    """`train_step` as training runs it on CUDA (bf16 autocast by default, fused AdamW) on padded batches."""
    from mtx.config import TrainConfig
    from mtx.data.batching import collate
    from mtx.train.step import make_optimizer, train_step

    device = torch.device("cuda")
    model = random_model(seed=0, **arch).to(device).train()
    tc = TrainConfig(lr=3e-3)  # amp "auto": bf16 on CUDA
    opt = make_optimizer(model, tc)
    for g in opt.param_groups:
        g["lr"] = tc.lr
    src = [[5 + (i * 7 + j) % 40 for j in range(2 + i % 7)] for i in range(16)]
    tgt = [[5 + (i * 3 + j) % 40 for j in range(1 + i % 6)] for i in range(16)]
    batch = collate(src, tgt)
    assert not batch.src_mask.all() and (batch.tgt_out == 0).any()  # real padding on both sides
    b = batch.to(device)
    losses = []
    for _ in range(100):  # the LSTM halves its loss in 60 to 70 steps (0.52 at 60 on a CPU, 0.51 on an H200)
        loss, bad = train_step(model, opt, [b], 1.0 / batch.n_tgt_tokens, tc, device)
        assert not bad.item()
        losses.append(loss.item() / batch.n_tgt_tokens)
    assert losses[-1] < 0.5 * losses[0]


@cuda
def test_cuda_bf16_decoding_matches_cpu(tiny_model, tiny_corpus):
    """Decoding under bf16 autocast (decode.precision=bf16) gives the CPU's fp32 translations on the tiny model."""
    from mtx import checkpoint
    from mtx.decode.translator import Translator

    src = (tiny_corpus / "train.de").read_text(encoding="utf-8").splitlines()[:30]
    model, tok, cfg, _ = checkpoint.load(tiny_model)
    cpu = [t.text for t in Translator(model, tok, cfg.decode, torch.device("cpu")).translate(src)]
    cfg.decode = dataclasses.replace(cfg.decode, precision="bf16")
    gpu_model = model.to("cuda")
    calls = []
    real = gpu_model.decode_step

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out.dtype)
        return out

    gpu_model.decode_step = spy
    gpu = [t.text for t in Translator(gpu_model, tok, cfg.decode, torch.device("cuda")).translate(src)]
    assert torch.bfloat16 in calls  # it did decode in bf16
    assert gpu == cpu


@cuda
def test_cuda_train_step_does_not_synchronise():
    """The step loop's claim: moving a pinned batch, token dropout, forward, loss, backward, clipping and the
    fused AdamW update (with its non-finite skip) never wait for the GPU; only log steps read values back.
    (The Transformer's claim: the RNN packs its sources with lengths read back to the host, as cuDNN wants them.)"""
    from mtx.config import TrainConfig
    from mtx.data.batching import collate
    from mtx.train.step import make_optimizer, train_step

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


@cuda
def test_cuda_interrupt_and_resume_equals_straight_run(tiny_corpus, tmp_path):
    """Item 5 of the GPU checklist: a training stopped at step 17 and resumed on CUDA (bf16 autocast, fused AdamW,
    dropout) ends with the parameters of an uninterrupted one. The figure is printed for the device report."""
    from conftest import TINY_SETTINGS
    from safetensors.torch import load_file

    from mtx.config import Config, build_config
    from mtx.train.loop import train
    from mtx.train.state import find_state, load_state

    extra = ["train.max_steps=40", "train.eval_every=25", "train.save_every=0", "model.dropout=0.1"]
    extra += ["train.average=4", "train.average_frac=0.75", "train.device=cuda", "train.amp=bf16"]
    cfg = build_config(None, [*TINY_SETTINGS, *extra])
    straight, parted = tmp_path / "straight", tmp_path / "parted"
    train(cfg, tiny_corpus, straight)
    first = train(cfg, tiny_corpus, parted, should_stop=lambda step: step == 17)
    assert first["steps"] == 17
    info, _, _ = load_state(find_state(parted))
    resumed = train(Config.from_dict(info["config"]), tiny_corpus, parted, resume=parted)
    assert resumed["steps"] == 40

    def params(d):
        t = load_file(str(find_state(d) / "state.safetensors"))
        return {k: v for k, v in t.items() if k.startswith(("model.", "optim.", "avg."))}

    a, b = params(straight), params(parted)
    assert a.keys() == b.keys() and len(a) > 10
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    print(f"\nCUDA resume: max parameter difference {diff}")
    assert diff == 0.0, f"max parameter difference {diff}"
