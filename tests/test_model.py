"""Model properties, for the Transformer and the RNN: masks, padding invariance, no future leak, cached == full
decoding."""

import pytest
import torch
from conftest import ARCH_IDS, ARCHS, random_batch, random_model

from mtx.models.layers import Dropout

VARIANTS = [
    dict(),
    dict(pre_norm=False),
    dict(tie_embeddings=False),
    dict(arch="rnn"),
    dict(arch="rnn", rnn_cell="lstm", tie_embeddings=False, enc_layers=1),
]
IDS = ["pre_norm_tied", "post_norm", "untied", "rnn_gru", "rnn_lstm_untied"]


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_padding_does_not_change_real_positions(variant):
    model = random_model(**variant)
    src, mask = random_batch(4, 7)
    tgt = torch.randint(4, 50, (4, 5))
    memory = model.encode(src, mask)
    logits = model.decode(tgt, memory, mask)
    # Pad every source by 5 more positions (with garbage ids under the mask) and the target by 3.
    src_p = torch.cat([src, torch.randint(4, 50, (4, 5))], dim=1)
    mask_p = torch.cat([mask, torch.zeros(4, 5, dtype=torch.bool)], dim=1)
    memory_p = model.encode(src_p, mask_p)
    tgt_p = torch.cat([tgt, torch.zeros(4, 3, dtype=torch.long)], dim=1)
    logits_p = model.decode(tgt_p, memory_p, mask_p)
    torch.testing.assert_close(memory_p[:, :7][mask], memory[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits_p[:, :5], logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_each_sentence_independent_of_batch(arch):
    model = random_model(**arch)
    src, mask = random_batch(3, 6)
    tgt = torch.randint(4, 50, (3, 4))
    full = model(src, mask, tgt)
    for i in range(3):
        n = int(mask[i].sum())
        alone = model(src[i : i + 1, :n], mask[i : i + 1, :n], tgt[i : i + 1])
        torch.testing.assert_close(alone[0], full[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_decoder_has_no_future_leak(arch):
    model = random_model(**arch)
    src, mask = random_batch(2, 6)
    memory = model.encode(src, mask)
    tgt = torch.randint(4, 50, (2, 8))
    changed = tgt.clone()
    changed[:, 5:] = torch.randint(4, 50, (2, 3))
    a = model.decode(tgt, memory, mask)
    b = model.decode(changed, memory, mask)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_encoder_ignores_masked_source_tokens(arch):
    model = random_model(**arch)
    src, mask = random_batch(3, 8, seed=3)
    other = torch.where(mask, src, torch.randint(4, 50, src.shape))
    torch.testing.assert_close(model.encode(src, mask)[mask], model.encode(other, mask)[mask])


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_cached_decode_step_equals_full_decode(variant):
    model = random_model(**variant)
    src, mask = random_batch(3, 6)
    memory = model.encode(src, mask)
    tgt = torch.randint(4, 50, (3, 7))
    full = model.decode(tgt, memory, mask)
    cache = model.init_cache(memory, mask, beam=1, max_steps=7)
    steps = torch.stack([model.decode_step(tgt[:, t], cache, t) for t in range(7)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


def test_cross_attention_shared_by_beams():
    """K beams per sentence read the sentence's one cross-attention K/V: same as repeating the memory."""
    model = random_model()
    src, mask = random_batch(2, 5)
    memory = model.encode(src, mask)
    K = 3
    tgt = torch.randint(4, 50, (2 * K, 4))
    full = model.decode(tgt, memory.repeat_interleave(K, 0), mask.repeat_interleave(K, 0))
    cache = model.init_cache(memory, mask, beam=K, max_steps=4)
    assert cache.cross_k[0].shape[0] == 2  # not copied per beam
    steps = torch.stack([model.decode_step(tgt[:, t], cache, t) for t in range(4)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


def test_variants_are_what_they_say():
    """Post-norm ends each block with a norm (pre-norm: one final norm per stack); untied has its own matrices."""
    tied, untied = random_model(), random_model(tie_embeddings=False)
    assert tied.src_embed.weight is tied.tgt_embed.weight
    assert untied.src_embed.weight is not untied.tgt_embed.weight
    n_tied = sum(p.numel() for p in tied.parameters())
    assert sum(p.numel() for p in untied.parameters()) > n_tied
    src, mask = random_batch(2, 5)
    for pre_norm in (True, False):  # either way the encoder's output is normalised (last block's or final norm)
        memory = random_model(pre_norm=pre_norm).encode(src, mask)[mask]
        torch.testing.assert_close(memory.mean(-1), torch.zeros(len(memory)), atol=1e-4, rtol=0)
        torch.testing.assert_close(memory.std(-1, unbiased=False), torch.ones(len(memory)), atol=1e-3, rtol=0)
    post = random_model(pre_norm=False)
    assert isinstance(post.enc_norm, torch.nn.Identity) and isinstance(random_model().enc_norm, torch.nn.LayerNorm)


def test_dropout_rate_and_scale():
    torch.manual_seed(0)
    drop = Dropout(0.1).train()
    x = torch.ones(200_000)
    y = drop(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 26 / 256) < 0.005
    assert abs(y.mean().item() - 1.0) < 0.01  # inverted dropout keeps the expectation
    assert torch.equal(drop.eval()(x), x)


def test_decode_step_attention_equals_sdpa():
    """`attend` (a decoding step's attention: three plain ops on CPU, SDPA elsewhere) with an additive bias
    computes what SDPA computes with the boolean padding mask."""
    from mtx.models.layers import attend

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, n, 8, generator=g) for n in (5, 7, 7))
    mask = torch.ones(3, 1, 1, 7, dtype=torch.bool)
    mask[0, ..., 4:] = False
    bias = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(attend(q, k, v, bias), want)
    torch.testing.assert_close(attend(q, k, v), torch.nn.functional.scaled_dot_product_attention(q, k, v))


def test_eval_encoding_runs_the_real_positions_only():
    """In eval mode the encoder skips padding: the real positions' memory is the padded run's (training mode with
    dropout off), the padding's is 0."""
    model = random_model(dropout=0.0)
    src, mask = random_batch(4, 9)
    packed = model.encode(src, mask)
    padded = model.train().encode(src, mask)
    model.eval()
    assert torch.allclose(packed[mask], padded[mask], atol=1e-5)
    assert bool((packed[~mask] == 0).all()) and not bool((padded[~mask] == 0).all())
