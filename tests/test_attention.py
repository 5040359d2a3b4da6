"""Cross-attention pictures: the recomputed weights are the ones the model uses; the picture has the pieces as axes."""

import struct

import pytest
import torch
from conftest import random_batch, random_model
from typer.testing import CliRunner

from mtx.cli.main import app
from mtx.models.layers import merge_heads


@pytest.mark.parametrize("variant", [dict(), dict(pre_norm=False)])
def test_weights_reproduce_the_cross_attention_output(variant):
    """weights @ V, through the output projection, equals what each cross-attention module returned; weights
    are distributions over the real source positions only; hooks leave the logits as they were."""
    model = random_model(**variant)
    src, mask = random_batch(3, 6, seed=1)
    tgt = torch.randint(4, 50, (3, 5))
    outputs = []
    handles = [
        layer.cross_attn.register_forward_hook(lambda m, a, o: outputs.append((m, a, o))) for layer in model.decoder
    ]
    plain = model(src, mask, tgt)
    for h in handles:
        h.remove()
    w = model.cross_attention(src, mask, tgt)  # (L, B, H, T, S)
    assert w.shape == (2, 3, 4, 5, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 4, 5))
    assert (w.masked_select(~mask[None, :, None, None, :].expand_as(w)) == 0).all()
    for i, (module, (_, memory, _), out) in enumerate(outputs):
        _, v = module.memory_kv(memory)
        torch.testing.assert_close(module.out(merge_heads(w[i] @ v)), out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(src, mask, tgt), plain)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_rnn_weights_reproduce_its_logits(cell):
    """The RNN's one attention (1 layer, 1 head): the weights, applied to the encoder states and through W_c
    and the output layer, give the logits the model computes."""
    model = random_model(arch="rnn", rnn_cell=cell)
    src, mask = random_batch(3, 6, seed=1)
    tgt = torch.randint(4, 50, (3, 5))
    w = model.cross_attention(src, mask, tgt)
    assert w.shape == (1, 3, 1, 5, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 3, 1, 5))
    assert (w.masked_select(~mask[None, :, None, None, :].expand_as(w)) == 0).all()
    memory = model.encode(src, mask)
    h, _ = model._run(model.tgt_embed(tgt) * model.scale, model.initial_state(memory, mask))
    out = torch.tanh(model.combine(torch.cat([w[0, :, 0] @ memory, h], dim=-1)))
    torch.testing.assert_close(model.logits(out), model(src, mask, tgt), atol=1e-5, rtol=1e-5)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _pair(tiny_corpus):
    """A training sentence and its translation (the tiny model has learnt them exactly)."""
    src = (tiny_corpus / "train.de").read_text(encoding="utf-8").splitlines()[7]
    return src, (tiny_corpus / "train.en").read_text(encoding="utf-8").splitlines()[7]


def test_translate_draws_the_attention(tiny_model, tiny_corpus, tmp_path):
    src, ref = _pair(tiny_corpus)
    out = tmp_path / "a.png"
    r = CliRunner().invoke(app, ["translate", "--model", str(tiny_model), "--attention", str(out), src])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == ref and _png_size(out)[0] > 100
    heads = tmp_path / "h.png"
    args = ["translate", "--model", str(tiny_model), "--attention", str(heads), "--attention-heads"]
    r = CliRunner().invoke(app, [*args, "--attention-layer", "0", src])
    assert r.exit_code == 0 and _png_size(heads)[0] > _png_size(out)[0]  # 4 panels side by side
    r = CliRunner().invoke(app, [*args, "--attention-layer", "5", src])
    assert r.exit_code == 2 and "--attention-layer 5: the model has 2 decoder layers" in r.stderr
    r = CliRunner().invoke(
        app, ["translate", "--model", str(tiny_model), "--attention", str(out), "Ein hund.", "Zwei."]
    )
    assert r.exit_code == 2 and "exactly one TEXT" in r.stderr


def test_attention_axes_are_the_pieces(tiny_model, tiny_corpus, monkeypatch, tmp_path):
    import mtx.decode.output as att  # what `translate` runs draws with the function it imported

    seen = {}
    real = att.draw

    def spy(src, tgt, weights, out, layer, per_head):
        seen.update(src=src, tgt=tgt, shape=tuple(weights.shape))
        return real(src, tgt, weights, out, layer, per_head)

    monkeypatch.setattr(att, "draw", spy)
    src, ref = _pair(tiny_corpus)
    r = CliRunner().invoke(app, ["translate", "--model", str(tiny_model), "--attention", str(tmp_path / "a.png"), src])
    assert r.exit_code == 0, r.output
    assert "".join(seen["src"]).replace("▁", " ").strip() == f"{src}</s>"
    assert "".join(seen["tgt"]).replace("▁", " ").strip() == f"{ref}</s>"
    assert seen["shape"] == (2, 4, len(seen["tgt"]), len(seen["src"]))
