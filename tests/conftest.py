"""Shared fixtures: a tiny synthetic parallel corpus and a tiny model trained on it once per session."""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path

import pytest
import torch

from mtx.config import ModelConfig
from mtx.models.base import build_model

os.environ.setdefault("HF_HOME", str(Path(__file__).parent.parent / ".pytest_cache" / "hf"))

LEXICON = {
    "ein": "a", "hund": "dog", "katze": "cat", "mann": "man", "frau": "woman", "kind": "child",
    "rennt": "runs", "springt": "jumps", "schläft": "sleeps", "isst": "eats", "rot": "red", "blau": "blue",
    "groß": "big", "klein": "small", "hier": "here", "dort": "there",
}  # fmt: skip


def make_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    words = list(LEXICON)
    pairs = set()
    while len(pairs) < n:
        src = [rng.choice(words) for _ in range(rng.randint(2, 6))]
        pairs.add((" ".join(src).capitalize() + ".", " ".join(LEXICON[w] for w in src).capitalize() + "."))
    return sorted(pairs)


def write_corpus(root: Path, splits: dict[str, int], seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, (split, n) in enumerate(splits.items()):
        pairs = make_pairs(n, seed + i)
        (root / f"{split}.de").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
        (root / f"{split}.en").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return root


@pytest.fixture
def logs():
    """mtx's log messages (INFO and above) while the test runs, as a list."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger, keep = logging.getLogger("mtx"), Keep()
    level = logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(keep)
    logger.setLevel(level)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """train/val/test_2016_flickr of a word-for-word toy language pair; val and test are subsets of train."""
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, {"train": 120})
    lines_de = (root / "train.de").read_text(encoding="utf-8").splitlines()
    lines_en = (root / "train.en").read_text(encoding="utf-8").splitlines()
    for split, sl in (("val", slice(0, 20)), ("test_2016_flickr", slice(20, 40))):
        (root / f"{split}.de").write_text("".join(x + "\n" for x in lines_de[sl]), encoding="utf-8")
        (root / f"{split}.en").write_text("".join(x + "\n" for x in lines_en[sl]), encoding="utf-8")
    return root


TINY_SETTINGS = [
    "model.vocab_size=100", "model.d_model=64", "model.n_heads=4", "model.enc_layers=2", "model.dec_layers=2",
    "model.d_ff=128", "model.dropout=0.0", "train.batch_tokens=400", "train.lr=3e-3", "train.warmup_steps=30",
    "train.max_steps=600", "train.eval_every=300", "train.max_epochs=1000", "train.eval_bleu_sents=20",
    "train.amp=fp32", "train.time_budget_min=0", "train.label_smoothing=0.0",
]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_model(tiny_corpus, tmp_path_factory) -> Path:
    """A model directory trained by `mtx train` until it fits the tiny corpus."""
    out = tmp_path_factory.mktemp("model") / "m"
    args = ["train", "--data", str(tiny_corpus), "--out", str(out), "--device", "cpu"]
    for s in TINY_SETTINGS:
        args += ["--set", s]
    return cli_trained(args, out, "m")


def cli_trained(args: list[str], out: Path, name: str) -> Path:
    """`out`, trained by `mtx` with `args`; under scripts/mutate.py (MTX_TEST_MODEL_CACHE) trained once, by the
    unmutated code, and copied for each mutant's run."""
    from typer.testing import CliRunner

    from mtx.cli.main import app

    kept = os.environ.get("MTX_TEST_MODEL_CACHE")
    if kept and (Path(kept) / name / "model.safetensors").is_file():
        shutil.copytree(Path(kept) / name, out)
        return out
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    if kept:
        shutil.copytree(out, Path(kept) / name, dirs_exist_ok=True)
    return out


def random_model(seed: int = 0, **kw) -> torch.nn.Module:
    """A small untrained model (a Transformer, or `arch="rnn"`) in eval mode (dropout off) for property tests."""
    torch.manual_seed(seed)
    base = dict(vocab_size=50, d_model=32, n_heads=4, enc_layers=2, dec_layers=2, d_ff=64, max_len=64)
    return build_model(ModelConfig(**{**base, **kw})).eval()


# Both architectures, for the tests of the seams they share (masks, search, the cache)
ARCHS = [dict(), dict(arch="rnn"), dict(arch="rnn", rnn_cell="lstm")]
ARCH_IDS = ["transformer", "rnn_gru", "rnn_lstm"]


def random_batch(B: int, S: int, vocab: int = 50, seed: int = 0):
    """Source ids (B, S) with real tokens >= 4 and right padding of random lengths, plus the mask."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (B, S), generator=g)
    lengths = torch.randint(1, S + 1, (B,), generator=g)
    lengths[0] = S
    mask = torch.arange(S)[None, :] < lengths[:, None]
    return src.masked_fill(~mask, 0), mask


# In CI (CI=true) a test skipped for a missing package, browser or tool is a failure: only the tests that need
# hardware CI has not (a CUDA device, several GPUs) may skip there.
HARDWARE_SKIPS = ("needs a CUDA device", "this machine has 2 GPUs", "tensorboard is installed here")
_unexpected_skips: list[str] = []


def pytest_runtest_logreport(report) -> None:
    if report.skipped and os.environ.get("CI", "").lower() == "true":
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(ok in reason for ok in HARDWARE_SKIPS):
            _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus) -> None:
    if _unexpected_skips:
        print("\nskipped in CI for a missing package, browser or tool (install it in .ci/run):")
        print("\n".join(_unexpected_skips))
        session.exitstatus = 1


@pytest.fixture
def model_copy(tiny_model, tmp_path) -> Path:
    """A copy of the tiny model that a test may damage."""
    out = tmp_path / "work" / "m"
    shutil.copytree(tiny_model, out)
    return out
