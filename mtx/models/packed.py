"""Decoding copies of a model whose linear layers (and output layer) run packed weights on the CPU:

- `fp32` (the default on the CPU): oneDNN's matmul on weights reordered once into its blocked layout
  (`mkldnn::_linear_pointwise`, as torch.compile's CPU backend packs them). On the 2-core EPYC machines torch's
  MKL takes its generic path ("Intel(R) Architecture processors" under MKL_VERBOSE=1): there oneDNN's packed
  GEMM ran the decoder's shapes 1.1-1.7x faster, with results that differ from MKL's in the last bits
  (docs/performance.md);
- `int8` (`decode.precision int8`): int8 weights, one scale per output row, and the input quantized at run time
  (dynamic quantization, as CTranslate2's int8 and OpenNMT-py's `quantize_dynamic`), fbgemm's kernel
  (`quantized::linear_dynamic`), 3x fp32's speed on the decoder's shapes.

Embeddings, norms and attention stay fp32. The model itself is untouched: training and scoring use its weights.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from mtx.models.layers import Linear, Output

KINDS = ("fp32", "int8")


def int8_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> Linear:
    """x -> x @ weightᵀ + bias with `weight` quantized to int8 per output row (symmetric) and x per call."""
    w = weight.detach().float()
    scale = (w.abs().amax(1) / 127).clamp_min(1e-12).double()
    with warnings.catch_warnings():  # torch marks its quantized tensors deprecated; the kernels are its own
        warnings.simplefilter("ignore")
        qw = torch.quantize_per_channel(w, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(qw, None if bias is None else bias.detach().float())
    return lambda x: torch.ops.quantized.linear_dynamic(x, packed)


def onednn_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> Linear:
    """x -> x @ weightᵀ + bias by oneDNN, on `weight` reordered once into its packed layout."""
    w = torch.ops.mkldnn._reorder_linear_weight(weight.detach().float(), None)
    b = None if bias is None else bias.detach().float()
    return lambda x: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


LINEARS = {"fp32": onednn_linear, "int8": int8_linear}


class PackedLinear(nn.Module):
    """An `nn.Linear`'s packed twin (for inference only)."""

    def __init__(self, linear: nn.Linear, kind: str):
        super().__init__()
        self.in_features, self.out_features, self.kind = linear.in_features, linear.out_features, kind
        self.linear = LINEARS[kind](linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.kind}"


def available(kind: str) -> bool:
    """Whether this torch build has the kernels `kind` needs (oneDNN for fp32, fbgemm for int8)."""
    if kind == "fp32":
        return torch.backends.mkldnn.is_available()
    return "fbgemm" in torch.backends.quantized.supported_engines or "x86" in torch.backends.quantized.supported_engines


def pack(model: nn.Module, kind: str = "int8") -> nn.Module:
    """A copy of `model` (any mtx model, an ensemble too) for decoding on the CPU: every `nn.Linear` a
    `PackedLinear`, every output layer packed the same way (`Output.packed`)."""
    q = copy.deepcopy(model).cpu().eval()
    heads = {id(m.out_proj) for m in q.modules() if isinstance(m, Output)}  # packed as output layers, below
    for parent in list(q.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear) and id(child) not in heads:
                setattr(parent, name, PackedLinear(child, kind))
    for m in q.modules():
        if isinstance(m, Output):
            m.packed = LINEARS[kind]
    return q
