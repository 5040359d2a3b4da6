"""int8 decoding on the CPU (`decode.precision int8`): a copy of a model whose linear layers and output layer
hold int8 weights, one scale per output row, and quantize their input at run time (dynamic quantization, as
CTranslate2's int8 and OpenNMT-py's `torch.quantization.quantize_dynamic`). The kernel is fbgemm's (torch's
`quantized::linear_dynamic`), with VNNI where the CPU has it; the choice among the options measured is in
docs/performance.md. Embeddings, norms and attention stay fp32.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from mtx.models.layers import Linear, Output


def int8_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> Linear:
    """x -> x @ weightᵀ + bias with `weight` quantized to int8 per output row (symmetric) and x per call."""
    w = weight.detach().float()
    scale = (w.abs().amax(1) / 127).clamp_min(1e-12).double()
    with warnings.catch_warnings():  # torch marks its quantized tensors deprecated; the kernels are its own
        warnings.simplefilter("ignore")
        qw = torch.quantize_per_channel(w, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(qw, None if bias is None else bias.detach().float())
    return lambda x: torch.ops.quantized.linear_dynamic(x, packed)


class Int8Linear(nn.Module):
    """An `nn.Linear`'s int8 twin (for inference only)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.linear = int8_linear(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize(model: nn.Module) -> nn.Module:
    """A copy of `model` (any mtx model, an ensemble too) for int8 decoding on the CPU: every `nn.Linear` an
    `Int8Linear`, every output layer int8 (`Output.int8`)."""
    q = copy.deepcopy(model).cpu().eval()
    for parent in list(q.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear(child))
    for m in q.modules():
        if isinstance(m, Output):
            m.int8 = int8_linear
    return q
