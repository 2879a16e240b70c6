"""Stopping a job in the worker (JobExecutor.stop, SIGTERM's handler): outside the training loop it
ends the job at once, inside it at the next step with a checkpoint; a stop that a cancel asked for
ends the job cancelled, one without (the service shutting down) interrupted."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from generation.adapter_registry import AdapterRegistry
from tuning.base import TrainResult
from tuning.jobs import JobSpec, TuningJob
from tuning.service import TuningDesk
from tuning.worker import Hooks, JobExecutor

CANCEL_BOUND_S = 15.0


@pytest.fixture
def desk(tmp_path: Path) -> TuningDesk:
    return TuningDesk(tmp_path / "tuning", AdapterRegistry(tmp_path / "adapters"), "cpu")


def running_job(desk: TuningDesk, tmp_path: Path, rows: list[dict[str, str]], model: str = "m",
                **train: Any) -> TuningJob:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = desk.add_dataset(data)
    desk.store.create(JobSpec(name="j", dataset_id=dataset.id, model=model, train=train))
    job = desk.store.claim_next()
    assert job is not None
    return job


class ScriptedTrainer:
    """A trainer that runs `script(should_stop)` in place of loading, tokenizing and training."""

    def __init__(self, script: Any) -> None:
        self.script = script

    def train(self, config: Any, on_progress: Any = None, should_stop: Any = None) -> TrainResult:
        cancelled = bool(self.script(should_stop))
        return TrainResult(output_dir=Path(config.output_dir), adapter_dir=None, steps=1,
                           train_loss=1.0, eval_loss=None, train_tokens=10, seconds=0.1,
                           tokens_per_s=100.0, peak_rss_mb=1.0, cancelled=cancelled)


def executor_with(desk: TuningDesk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  script: Any) -> JobExecutor:
    monkeypatch.setattr("tuning.trainer.make_trainer", lambda name="native": ScriptedTrainer(script))
    return JobExecutor(desk.store, desk.datasets, desk.adapters, desk.runs_root,
                       Hooks(load_model=lambda path: None))


ROWS = [{"instruction": f"Q{i}?", "output": f"A{i}."} for i in range(4)]


@pytest.mark.parametrize(("cancelled", "state"), [(True, "cancelled"), (False, "interrupted")])
def test_a_stop_while_loading_ends_the_job_at_once(desk: TuningDesk, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, cancelled: bool,
                                                   state: str) -> None:
    reached: list[str] = []
    job = running_job(desk, tmp_path, ROWS)

    def loading(should_stop: Any) -> bool:
        if cancelled:
            desk.store.cancel(job.id)
        executor.stop()  # what SIGTERM does: no step to wait for, so it raises here
        reached.append("after the stop")
        return False

    executor = executor_with(desk, tmp_path, monkeypatch, loading)
    executor.run(job)
    ended = desk.store.get(job.id)
    assert reached == [] and ended.state == state and ended.resumable
    assert (ended.error is None) == cancelled


def test_a_stop_inside_the_training_loop_waits_for_the_step(desk: TuningDesk, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    job = running_job(desk, tmp_path, ROWS)
    seen: list[bool] = []

    def training(should_stop: Any) -> bool:
        seen.append(should_stop())  # the loop has begun
        desk.store.cancel(job.id)
        executor.stop()  # no raise: the loop checkpoints at its next step
        seen.append(should_stop())
        return True

    executor = executor_with(desk, tmp_path, monkeypatch, training)
    executor.run(job)
    ended = desk.store.get(job.id)
    assert seen == [False, True]
    assert ended.state == "cancelled" and ended.result is not None and ended.result["train"]["cancelled"]


def test_a_cancel_seen_after_training_registers_nothing(desk: TuningDesk, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    job = running_job(desk, tmp_path, ROWS)

    def trained_then_cancelled(should_stop: Any) -> bool:
        should_stop()
        desk.store.cancel(job.id)  # e.g. during the final evaluation, with no runner to signal
        return False

    executor_with(desk, tmp_path, monkeypatch, trained_then_cancelled).run(job)
    assert desk.store.get(job.id).state == "cancelled" and desk.adapters.list() == []


def test_sigterm_while_tokenizing_stops_the_real_trainer_within_seconds(
        desk: TuningDesk, tmp_path: Path, base_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Long examples (a second each to tokenise): the stop lands between two of them."""
    import tuning.base

    text = " ".join(f"word{i % 97}" for i in range(16_000))[:99_000]
    job = running_job(desk, tmp_path, [{"instruction": f"Item {i}?", "output": f"{i} {text}"}
                                       for i in range(60)], model=str(base_model), max_steps=1)
    tokenizing = threading.Event()
    real = tuning.base.tokenize_samples

    def spy(*args: Any, **kw: Any) -> Any:
        tokenizing.set()
        return real(*args, **kw)

    monkeypatch.setattr(tuning.base, "tokenize_samples", spy)
    executor = JobExecutor(desk.store, desk.datasets, desk.adapters, desk.runs_root,
                           Hooks(load_model=lambda path: None))
    sent: list[float] = []

    def cancel_soon() -> None:
        if tokenizing.wait(120):
            time.sleep(0.5)
            desk.store.cancel(job.id)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, lambda *_: executor.stop())
    try:
        threading.Thread(target=cancel_soon, daemon=True).start()
        executor.run(job)
        ended_at = time.monotonic()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sent, "tokenizing never started"
    assert desk.store.get(job.id).state == "cancelled"
    assert ended_at - sent[0] < CANCEL_BOUND_S
