"""`mtx info`: the parameter arithmetic by component is exact, component by component, for every variant."""

import json

import pytest
from conftest import random_model
from typer.testing import CliRunner

from mtx.cli.main import app
from mtx.models.parameters import parameter_parts


@pytest.mark.parametrize(
    "variant",
    [
        dict(),
        dict(tie_embeddings=False),
        dict(pre_norm=False),
        dict(pre_norm=False, tie_embeddings=False),
        dict(d_model=48, n_heads=3, d_ff=80, enc_layers=3, dec_layers=1, vocab_size=37),
        dict(arch="rnn"),
        dict(arch="rnn", rnn_cell="lstm", tie_embeddings=False),
        dict(arch="rnn", d_model=48, enc_layers=3, dec_layers=1, vocab_size=37),
    ],  # fmt: skip
)
def test_each_component_formula_counts_its_own_parameters(variant):
    model = random_model(**variant)
    params = dict(model.named_parameters())  # shared (tied) tensors appear once
    parts = parameter_parts(model.config)
    covered = []
    for part in parts:
        names = [n for n in params if n.startswith(part.prefixes)]
        assert names, part.name
        assert sum(params[n].numel() for n in names) == part.count, part.name
        covered += names
    assert sorted(covered) == sorted(params)  # every parameter in exactly one component
    assert sum(p.count for p in parts) == sum(p.numel() for p in model.parameters())


def test_info_command_text_and_json(tiny_model, tiny_corpus):
    r = CliRunner().invoke(app, ["info", "--model", str(tiny_model), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    from mtx import checkpoint

    model, *_ = checkpoint.load(tiny_model)
    total = sum(p.numel() for p in model.parameters())
    assert info["parameters"]["total"] == total == sum(x["count"] for x in info["parameters"]["by_component"])
    assert info["training"]["steps"] == 600 and info["tokenizer"]["pieces"] == 100
    assert info["training"]["corpus"] == str(tiny_corpus) and info["training"]["pairs"] == "de-en"
    assert info["files"]["model.safetensors"] == (tiny_model / "model.safetensors").stat().st_size
    text = CliRunner().invoke(app, ["info", "--model", str(tiny_model)]).stdout
    assert f"parameters: {total:,}" in text and "4d² + 4d" in text and "2·d·d_ff + d_ff + d" in text
