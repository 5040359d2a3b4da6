"""The BLAS check of `mtx train` (mtx/train/cpu.py): the floor read from /proc/cpuinfo, the warning's rule."""

import pytest

from mtx.train import cpu

AVX512 = "processor : 0\ncpu MHz\t\t: 2596.144\nflags\t\t: fpu sse avx2 fma avx512f avx512bw\n"
AVX2 = "cpu MHz : 3000.0\nflags : fpu sse avx2 fma\n"
OLD = "cpu MHz : 2000.0\nflags : fpu sse sse2\n"


@pytest.mark.parametrize(("info", "threads", "floor"), [(AVX512, 2, 2 * 2.596144 * 32), (AVX2, 4, 4 * 3.0 * 16),
                                                        (OLD, 1, 2.0 * 8)])  # fmt: skip
def test_the_floor_is_threads_times_clock_times_one_fma_unit(info, threads, floor):
    assert cpu.peak_floor(threads, info) == pytest.approx(floor)


def test_no_clock_or_no_flags_no_floor():
    assert cpu.peak_floor(2, "flags : avx2 fma\n") is None
    assert cpu.peak_floor(2, "cpu MHz : 2000\n") is None


def test_a_slow_blas_is_named_with_its_figures(monkeypatch):
    monkeypatch.setattr(cpu, "peak_floor", lambda threads: 100.0)
    monkeypatch.setattr(cpu, "matmul_gflops", lambda: 20.0)
    msg = cpu.blas_warning(2)
    assert msg is not None and "20 GFLOPS" in msg and "100" in msg and "generic path" in msg
    monkeypatch.setattr(cpu, "matmul_gflops", lambda: 0.36 * 100)
    assert cpu.blas_warning(2) is None  # at 36% of the floor: no warning


def test_the_matmul_is_measured_without_touching_the_global_random_stream():
    import torch

    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    assert cpu.matmul_gflops(64, 0.01) > 0
    assert torch.equal(torch.rand(3), want)


def test_training_says_how_many_steps_the_budget_buys(tiny_corpus, tmp_path, logs):
    from conftest import TINY_SETTINGS

    from mtx.config import build_config
    from mtx.train.loop import FORECAST_AT, train

    cfg = build_config(None, [*TINY_SETTINGS, f"train.max_steps={FORECAST_AT + 2}", "train.time_budget_min=5"])
    train(cfg, tiny_corpus, tmp_path / "m")
    line = next(x for x in logs if "budget buys about" in x)
    assert "the 5-minute budget" in line and int(line.split("about ")[1].split()[0]) > FORECAST_AT
