"""The fused CPU loss computes what `F.cross_entropy` with label smoothing and an ignored index computes."""

import pytest
import torch
import torch.nn.functional as F

from mtx.train.loss import BLOCK_ROWS, smoothed_cross_entropy


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_loss_and_gradient_match_torch(dtype, eps):
    g = torch.Generator().manual_seed(0)
    n, vocab = 2 * BLOCK_ROWS + 37, 29  # several blocks, the last one partial
    logits = (torch.randn(n, vocab, generator=g) * 4).to(dtype)
    target = torch.randint(0, vocab, (n,), generator=g)
    target[::7] = 0  # ignored rows
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    got = smoothed_cross_entropy(a, target, eps, ignore_index=0)
    want = F.cross_entropy(b.float(), target, ignore_index=0, label_smoothing=eps, reduction="sum")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-3)
    (got * 0.37).backward()
    (want * 0.37).backward()
    tol = {"rtol": 1e-2, "atol": 1e-4} if dtype == torch.bfloat16 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(a.grad, b.grad, **tol)
    assert a.grad.dtype == dtype and not a.grad[::7].any()  # no gradient from ignored rows
    with torch.no_grad():
        torch.testing.assert_close(smoothed_cross_entropy(logits, target, eps, 0), want.detach(), rtol=1e-5, atol=1e-3)


def test_non_finite_logits_give_a_non_finite_loss():
    logits = torch.randn(4, 9)
    logits[2, 3] = float("nan")
    assert not torch.isfinite(smoothed_cross_entropy(logits, torch.tensor([1, 2, 3, 4]), 0.1, 0))
