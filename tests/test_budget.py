"""The learning-rate schedule and the time budget, driven by step counts and a fake clock."""

import math

import pytest

from mtx.train.budget import Budget
from mtx.train.schedule import lr_at


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant", "inv_sqrt"])
def test_lr_warms_up_linearly_then_decays(kind):
    peak, warmup = 1e-3, 10
    assert [lr_at(s, 0.0, peak, warmup, kind, 0.1) for s in range(warmup)] == pytest.approx(
        [peak * (s + 1) / warmup for s in range(warmup)]
    )
    after = [lr_at(warmup + i, i / 100, peak, warmup, kind, 0.1) for i in range(101)]
    first = peak * math.sqrt(10 / 11) if kind == "inv_sqrt" else peak  # inv_sqrt: peak * sqrt(warmup / (step + 1))
    assert after[0] == pytest.approx(first) and all(a >= b for a, b in zip(after, after[1:], strict=False))
    end = {"cosine": 0.1 * peak, "linear": 0.1 * peak, "constant": peak, "inv_sqrt": peak * math.sqrt(10 / 111)}
    assert after[-1] == pytest.approx(end[kind])


def test_cosine_is_halfway_at_half_progress_and_clamped():
    assert lr_at(500, 0.5, 1.0, 0, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_at(500, 1.7, 1.0, 0, "cosine", 0.2) == pytest.approx(0.2)  # progress beyond 1 stays at the floor


class Clock:
    def __init__(self, now: float = 50.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_progress_runs_evenly_to_the_reserve_even_for_short_budgets():
    clock = Clock()
    b = Budget(minutes=0.2, max_steps=0, max_epochs=100, clock=clock)  # 12 s: the old code jumped to 1 at once
    assert b.reserve() == pytest.approx(0.6 + 2.0)  # before any validation: 5% of the budget, and the save
    seen = []
    for step in range(200):
        b.sync(step, b.elapsed())
        if b.time_up():
            break
        seen.append(b.progress(step, 0.0))
        clock.now += 0.1
    assert step == 94  # 12 s - 2.6 s reserve = 9.4 s of steps
    assert seen[47] == pytest.approx(0.5, abs=0.01) and seen[-1] == pytest.approx(1.0, abs=0.02)


def test_reserve_follows_the_measured_validation_and_counts_final_evals():
    b = Budget(minutes=10, max_steps=0, max_epochs=1, clock=Clock(), final_evals=2)
    assert b.reserve() == pytest.approx(2 * 30.0 + 2.0)  # 5% of 10 minutes per validation, until one is timed
    b.sync(100, 60.0, eval_cost=7.0)
    assert b.reserve() == pytest.approx(2 * 7.0 + 2.0)


def test_progress_between_syncs_is_the_same_for_every_clock():
    """Two ranks whose clocks disagree compute the same progress from the agreed sync values."""
    fast, slow = Budget(1, 0, 1, clock=Clock(0.0)), Budget(1, 0, 1, clock=Clock(500.0))
    for b in (fast, slow):
        b.sync(0, 0.0)
        b.sync(50, 10.0)  # rank 0's elapsed time at step 50: 0.2 s a step
    assert [fast.progress(s, 0) for s in range(50, 60)] == [slow.progress(s, 0) for s in range(50, 60)]
    assert fast.progress(60, 0) == pytest.approx(12.0 / (60 - fast.reserve()))


def test_step_limit_and_epochs():
    b = Budget(0, max_steps=40, max_epochs=3, clock=Clock())
    assert b.progress(10, 0.0) == pytest.approx(0.25) and not b.steps_done(39) and b.steps_done(40)
    assert Budget(0, 0, max_epochs=4, clock=Clock()).progress(0, 1.0) == pytest.approx(0.25)
    assert not Budget(0, 0, 4, clock=Clock()).time_up() and math.isinf(Budget(0, 0, 4).left())


def test_a_resumed_budget_counts_the_time_already_spent():
    clock = Clock()
    b = Budget(minutes=1, max_steps=0, max_epochs=1, clock=clock, spent=40.0)
    assert b.elapsed() == pytest.approx(40.0) and b.left() == pytest.approx(20.0)
    b.sync(10, b.elapsed())
    clock.now += 16.0
    b.sync(11, b.elapsed())
    assert b.time_up()  # 56 s of 60, with a 3 s + 2 s reserve
