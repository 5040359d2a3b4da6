"""Cross-attention pictures: for one sentence, the hypothesis beam search returns is fed back through the decoder
(teacher forcing) and the model recomputes its cross-attention weights (`Seq2Seq.cross_attention`); decoding
itself never computes them."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from mtx.config import DecodeConfig
from mtx.data.batching import collate
from mtx.data.tokenizer import BOS, Tokenizer
from mtx.decode.search import search
from mtx.errors import UsageError
from mtx.models.base import Seq2Seq


@torch.no_grad()
def attention_of(
    model: Seq2Seq,
    tok: Tokenizer,
    decode: DecodeConfig,
    text: str,
    device: torch.device,
    prefix: list[int] | None = None,
) -> tuple[list[str], list[str], torch.Tensor]:
    """(source pieces, target pieces, weights (layers, heads, target, source)) for `text` and its translation;
    EOS is shown as `</s>` on both sides."""
    ids = tok.encode([text.strip()])[0]
    if not ids:
        raise UsageError("--attention: the sentence is empty")
    ids = ((prefix or []) + ids)[: model.config.max_len - 1]  # the target-language tag shows as a source piece
    batch = collate([ids]).to(device)
    (res,) = search(model, batch.src, batch.src_mask, decode.beam, decode.alpha, decode.max_len_a, decode.max_len_b)
    hyp = res[0][0]
    tgt_in = torch.tensor([[BOS, *hyp]], device=device)
    w = model.eval().cross_attention(batch.src, batch.src_mask, tgt_in)[:, 0]  # (L, H, T, S)
    pieces = tok.sp.id_to_piece
    return [pieces(i) for i in ids] + ["</s>"], [pieces(i) for i in hyp] + ["</s>"], w.cpu()


def draw(src: list[str], tgt: list[str], weights: torch.Tensor, out: Path, layer: int, per_head: bool) -> Path:
    """A heat map of one layer's cross-attention (target pieces down, source pieces across), averaged over heads
    or one panel per head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_layers, n_heads = weights.shape[:2]
    if not -n_layers <= layer < n_layers:
        raise UsageError(f"--attention-layer {layer}: the model has {n_layers} decoder layers (0..{n_layers - 1})")
    w = weights[layer]
    mean = "mean over heads" if n_heads > 1 else "attention"
    maps = [(f"head {h}", w[h]) for h in range(n_heads)] if per_head else [(mean, w.mean(0))]
    cols = min(len(maps), 4)
    rows = math.ceil(len(maps) / cols)
    size = (max(4.0, 0.35 * len(src) + 1.5) * cols, max(3.0, 0.3 * len(tgt) + 1.5) * rows)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    shown = layer % n_layers
    for ax, (title, m) in zip(axes.flat, maps, strict=False):
        ax.imshow(m.numpy(), cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(src)), src, rotation=90, fontsize=8)
        ax.set_yticks(range(len(tgt)), tgt, fontsize=8)
        ax.set_title(f"decoder layer {shown}: {title}", fontsize=9)
    for ax in list(axes.flat)[len(maps) :]:
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
