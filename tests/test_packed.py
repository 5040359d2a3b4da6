"""Packed decoding copies (mtx/models/packed.py): int8 (`decode.precision int8`) within the quantization's bound,
fp32 (oneDNN) within rounding of the model's own; the model they copy untouched; translations as the model's on a
trained model; refusals where they cannot run."""

import pytest
import torch
from conftest import ARCH_IDS, ARCHS, random_batch, random_model
from typer.testing import CliRunner

from mtx.cli.main import app
from mtx.config import DecodeConfig
from mtx.data.batching import collate
from mtx.data.tokenizer import Tokenizer
from mtx.decode.load import load
from mtx.decode.search import beam_search
from mtx.decode.translator import Translator
from mtx.errors import MtxError
from mtx.models.ensemble import Ensemble
from mtx.models.packed import PackedLinear, int8_linear, onednn_linear, pack

runner = CliRunner()


@pytest.mark.parametrize("shape", [(5, 64, 48), (300, 256, 1000), (1, 32, 8)])
def test_int8_linear_is_within_the_rounding_bound(shape):
    """Each product's error is at most |x|·half a weight step + |w|·half an input step + their product, summed
    (weights rounded per output row to 1/127 of its largest, the input per call to 1/127 of its largest, or
    1/255 of its range: the bound takes the coarser)."""
    n, k, m = shape
    g = torch.Generator().manual_seed(sum(shape))
    x, w, b = torch.randn(n, k, generator=g), torch.randn(m, k, generator=g) * 0.1, torch.randn(m, generator=g)
    got = int8_linear(w, b)(x)
    sw = w.abs().amax(1) / 127 / 2  # (m,) half a weight step
    sx = x.abs().amax() / 127 / 2  # half an input step, at the coarsest
    bound = x.abs() @ torch.ones(k, m) * sw + torch.ones(n, k) @ w.abs().T * sx + k * sx * sw
    err = (got - torch.nn.functional.linear(x, w, b)).abs()
    assert bool((err <= bound * 1.01 + 1e-5).all()), float((err - bound).max())
    assert float(err.max()) > 0  # it is int8 arithmetic, not fp32's


@pytest.mark.parametrize("kw", ARCHS, ids=ARCH_IDS)
def test_quantize_copies_every_linear_layer_and_leaves_the_model_as_it_was(kw):
    model = random_model(**kw)
    src, mask = random_batch(2, 6)
    before = beam_search(model, src, mask)
    q = pack(model)
    assert not any(isinstance(m, torch.nn.Linear) for m in q.modules())
    assert sum(isinstance(m, PackedLinear) for m in q.modules()) == sum(
        isinstance(m, torch.nn.Linear) for m in model.modules()
    )
    assert beam_search(model, src, mask) == before  # the original is fp32 still
    tgt = torch.randint(4, 50, (2, 5))
    with torch.no_grad():
        ref, got = model(src, mask, tgt), q(src, mask, tgt)
    assert torch.allclose(got, ref, atol=0.05 * float(ref.abs().max()))
    assert q.packed is not None and model.packed is None


def test_an_ensemble_quantizes_each_member():
    e = Ensemble([random_model(0), random_model(1)]).eval()
    q = pack(e)
    assert all(m.packed is not None for m in q.members)
    src, mask = random_batch(2, 6)
    assert [len(r) for r in beam_search(q, src, mask)] == [1, 1]


def test_int8_translations_equal_fp32_on_the_trained_tiny_model(tiny_model, tiny_corpus):
    lines = (tiny_corpus / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    fp32, _ = load(tiny_model, device="cpu")
    int8, _ = load(tiny_model, device="cpu", precision="int8")
    a, b = fp32.translate(lines), int8.translate(lines)
    assert [t.text for t in b] == [t.text for t in a]
    assert [t.nbest[0][1] for t in b] == pytest.approx([t.nbest[0][1] for t in a], abs=0.05)
    assert [t.nbest[0][1] for t in b] != [t.nbest[0][1] for t in a]  # int8 did run


def test_the_cli_takes_precision_int8_and_refuses_unknown_ones(tiny_model):
    r = runner.invoke(app, ["translate", "--model", str(tiny_model), "--precision", "int8", "Ein hund."])
    assert r.exit_code == 0 and r.output.strip() == "A dog."
    r = runner.invoke(app, ["translate", "--model", str(tiny_model), "--precision", "int4", "Ein hund."])
    assert r.exit_code != 0 and "--precision" in r.output and "Traceback" not in r.output


def test_int8_off_the_cpu_is_refused_in_one_line(tiny_model):
    tok = Tokenizer.load(tiny_model / "tokenizer.model")
    tr = Translator(random_model(vocab_size=len(tok)), tok, DecodeConfig(precision="int8"), torch.device("cuda"))
    with pytest.raises(MtxError, match="int8 runs on the CPU"):
        tr.model_for("int8")


def test_int8_without_torchs_int8_kernels_is_refused_not_fp32(tiny_model, monkeypatch):
    """A torch built without fbgemm: int8 is refused in one line; fp32 falls back to the model itself."""
    import mtx.decode.translator as translator

    tok = Tokenizer.load(tiny_model / "tokenizer.model")
    model = random_model(vocab_size=len(tok))
    tr = Translator(model, tok, DecodeConfig(precision="int8"), torch.device("cpu"))
    monkeypatch.setattr(translator, "available", lambda kind: False)
    with pytest.raises(MtxError, match="no fbgemm int8 kernels"):
        tr.model_for("int8")
    assert tr.model_for("fp32") is model


def test_the_server_defaults_to_int8_and_the_shortlist_on_the_cpu(tiny_model, model_copy):
    from mtx.data.shortlist import SHORTLIST
    from mtx.serve.app import fastest

    assert fastest(tiny_model, "cpu", {"beam": None}) == {"beam": None, "precision": "int8", "shortlist": True}
    given = {"precision": "fp32", "shortlist": False}
    assert fastest(tiny_model, "cpu", given) == given  # what the command says wins
    (model_copy / SHORTLIST).unlink()
    assert fastest([tiny_model, model_copy], "cpu", {})["shortlist"] is False  # every model needs one


@pytest.mark.parametrize("kw", ARCHS, ids=ARCH_IDS)
def test_the_fp32_copy_is_the_model_within_rounding(kw):
    model = random_model(**kw)
    src, mask = random_batch(3, 7)
    q = pack(model, "fp32")
    assert all(m.kind == "fp32" for m in q.modules() if isinstance(m, PackedLinear))
    tgt = torch.randint(4, 50, (3, 5))
    with torch.no_grad():
        assert torch.allclose(q(src, mask, tgt), model(src, mask, tgt), atol=1e-4)
    assert [[t for t, _ in r] for r in beam_search(q, src, mask)] == [[t for t, _ in r] for r in
                                                                     beam_search(model, src, mask)]  # fmt: skip
    x, w, b = torch.randn(9, 16), torch.randn(24, 16), torch.randn(24)
    assert torch.allclose(onednn_linear(w, b)(x), torch.nn.functional.linear(x, w, b), atol=1e-5)


def test_the_translator_decodes_fp32_on_the_cpu_with_the_packed_copy(tiny_model, tiny_corpus):
    tr, _ = load(tiny_model, device="cpu")
    lines = (tiny_corpus / "val.de").read_text(encoding="utf-8").splitlines()
    out = tr.translate(lines)
    assert set(tr.packed) == {"fp32"} and tr.model_for("fp32") is tr.packed["fp32"]
    ref = [beam_search(tr.model, *_batch(tr, line)) for line in lines]
    assert [t.tokens for t in out] == [r[0][0][0] for r in ref]


def _batch(tr, line):
    b = collate(tr.tokenizer.encode([line]))
    return b.src, b.src_mask


def test_int8_weights_are_rounded_to_a_127th_of_each_rows_largest():
    """Through an identity input (exact in int8), the layer gives back its weights as stored: each within half a
    step of 1/127 of its row's largest magnitude."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 32, generator=g) * torch.linspace(0.1, 3, 40)[:, None]
    got = int8_linear(w, torch.zeros(40))(torch.eye(32))  # (32, 40) = wᵀ, dequantized
    step = w.abs().amax(1) / 127
    assert bool(((got.T - w).abs() <= step[:, None] / 2 + 1e-6).all())
