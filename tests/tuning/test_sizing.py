"""tuning.sizing: runs planned from the data, the budget and the measured speed; the one-line verdict."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tuning.errors import InvalidConfig
from tuning.native import _Loop
from tuning.sizing import MIN_STEPS, RunPlan, parse_duration, plan_run, verdict


@pytest.mark.parametrize(("text", "seconds"), [("600", 600), ("90s", 90), ("10m", 600),
                                                ("1.5h", 5400), (" 2 min ", 120)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "-5m", "0", "5d"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(InvalidConfig, match="time_budget"):
        parse_duration(text)


def test_small_data_gets_enough_steps_within_the_budget() -> None:
    plan = plan_run([150] * 120, {}, "lora", params=135_000_000, tokens_per_s=100.0)
    assert (plan.batch_size * plan.grad_accum, plan.lr) == (4, 1e-3)
    assert plan.steps == 90  # three epochs of 120 at 4 an optimiser step
    assert plan.tokens == 90 * 4 * 150 and plan.minutes == pytest.approx(9.0)
    assert plan.minutes <= plan.budget_minutes and not plan.warnings
    assert plan.overrides() == {"batch_size": 4, "grad_accum": 1, "lr": 1e-3, "max_steps": 90,
                                "time_budget": "600s"}


def test_the_budget_caps_the_steps_and_warns_when_too_few_remain() -> None:
    plan = plan_run([600] * 300, {"time_budget": "5m"}, "lora", tokens_per_s=100.0)
    assert plan.steps == int(300 * 100 / (8 * 600)) < MIN_STEPS
    assert any("unlikely to learn" in w and "5 min" in w for w in plan.warnings)
    assert any("sees only" in w for w in plan.warnings)


def test_given_options_are_kept_and_not_replanned() -> None:
    plan = plan_run([100] * 120, {"epochs": 2, "lr": 3e-4, "batch_size": 8}, "lora",
                    tokens_per_s=100.0)
    assert (plan.batch_size, plan.grad_accum, plan.lr, plan.steps) == (8, 1, 3e-4, 30)
    assert plan.overrides() == {"grad_accum": 1}  # epochs decide the steps: no max_steps forced
    few = plan_run([100] * 120, {"max_steps": 7, "grad_accum": 4, "batch_size": 8}, "lora")
    assert few.steps == 7 and any("unlikely to learn: only 7" in w for w in few.warnings)
    assert "(assumed" in few.line() and "7 steps x 32 examples" in few.line()


def test_the_batch_is_sized_to_the_jobs_own_examples_not_the_mixed_in_ones() -> None:
    alone = plan_run([100] * 240, {}, "lora", tokens_per_s=1e6)
    mixed = plan_run([100] * 240, {}, "lora", tokens_per_s=1e6, mixed=60)  # 180 of the job's own
    assert alone.batch_size * alone.grad_accum == 8 and mixed.batch_size * mixed.grad_accum == 4
    assert mixed.steps == 3 * 240 // 4  # three epochs of all 240, four at a step


def test_a_larger_model_gets_a_smaller_lr() -> None:
    assert plan_run([100] * 50, {}, "lora", params=7_000_000_000).lr == 2e-4


def test_plan_round_trips_through_the_job_record() -> None:
    plan = plan_run([100] * 50, {}, "lora", tokens_per_s=80.0, rate_source="(measured: last 2 jobs)")
    assert RunPlan(**plan.to_dict()) == plan and "measured: last 2 jobs" in plan.line()


def test_verdict_from_the_gate_or_the_loss() -> None:
    gate = {"base": {"adherence": 0.0}, "tuned": {"adherence": 0.95}, "prompts_answered": 20}
    assert verdict({}, gate) == "behaviour took: adherence 0.00 -> 0.95 on 20 held-out prompts"
    gate["tuned"]["adherence"] = 0.5
    assert verdict({}, gate).startswith("behaviour did not take")
    assert "loss still 2.25" in verdict({"train_loss": 2.25}, None)
    assert verdict({"train_loss": 2.0, "eval_loss": 0.3}, {}).startswith("behaviour probably took")


def _loop(total: int, budget: float | None, most: int | None = None) -> Any:
    notes: list[str] = []
    return SimpleNamespace(total=total, budget_s=budget,
                           config=SimpleNamespace(max_steps=total, budget_max_steps=most),
                           state=SimpleNamespace(step=0, seconds=0.0), _rate_from=None,
                           log=SimpleNamespace(note=notes.append), notes=notes)


def _steps(loop: Any, *durations: float) -> None:
    for seconds in durations:
        loop.state.step += 1
        loop.state.seconds += seconds
        _Loop._fit_budget(loop)


def test_a_run_fits_its_steps_to_the_budget_at_the_measured_speed() -> None:
    slow = _loop(total=60, budget=600.0)
    _steps(slow, 60.0, 20.0, 20.0)  # the first step's warm-up is not the rate
    assert slow.total == 60 and not slow.notes  # three steps measured before deciding
    _steps(slow, 20.0)
    assert slow.total == 28 and "60 -> 28 steps" in slow.notes[0]  # 20 s a step: 24 more in 480 s
    _steps(slow, *[5.0] * 30)  # faster again: back up, but never past the plan
    assert slow.total == 60
    fast = _loop(total=60, budget=600.0)
    _steps(fast, 30.0, *[5.0] * 5)
    assert fast.total == 60 and not fast.notes
    unbudgeted = _loop(total=60, budget=None)
    _steps(unbudgeted, *[80.0] * 5)
    assert unbudgeted.total == 60


def test_steps_that_slow_down_late_do_not_overrun_the_budget() -> None:
    """Batches of like lengths: short ones first here, long ones last (the order is random)."""
    loop = _loop(total=40, budget=600.0)
    durations = [30.0] + [10.0] * 19 + [25.0] * 40
    while loop.state.step < loop.total:
        _steps(loop, durations[loop.state.step])
    assert loop.total < 40 and 600.0 - 25.0 < loop.state.seconds <= 600.0


def test_a_plan_cut_at_an_assumed_speed_grows_back_when_the_measured_speed_affords_it() -> None:
    plan = plan_run([300] * 180, {}, "lora", tokens_per_s=60.0)  # 3 epochs want 135 steps
    assert plan.steps == int(600 * 60 / (4 * 300)) == 30 and plan.wanted_steps == 135
    assert plan.overrides()["budget_max_steps"] == 135 and "30 steps (up to 135 if faster)" in plan.line()
    loop = _loop(total=30, budget=600.0, most=135)
    _steps(loop, 30.0, *[4.0] * 5)  # 4 s a step: 150 would fit, the data wants 135
    assert loop.total == 135 and "30 -> 135 steps" in loop.notes[0]
    assert plan_run([300] * 180, {}, "lora", tokens_per_s=1e6).wanted_steps is None  # nothing cut


def test_workers_get_passive_openmp_threads_unless_told_otherwise() -> None:
    from tuning.runner import worker_env

    assert worker_env({"PATH": "/bin"}) == {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE"}
    assert worker_env({"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"
