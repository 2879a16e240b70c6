"""The runner: worker processes that crash, are killed or finish; the runner and its caller live on."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tuning.jobs import JobSpec, JobStore, TuningJob
from tuning.runner import CANCEL_GRACE_S, TuningRunner

ROOT = str(Path(__file__).resolve().parents[2])


def worker(code: str, db: Path) -> list[str]:
    """A stand-in worker: Python `code` run with `store` and `job_id` defined."""
    prelude = (f"import sys; sys.path.insert(0, {ROOT!r}); from tuning.jobs import JobStore; "
               f"store = JobStore({str(db)!r}); job_id = sys.argv[1]\n")
    return [sys.executable, "-c", prelude + code]


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite")


def run_one(store: JobStore, tmp_path: Path, code: str) -> tuple[TuningJob, list[TuningJob]]:
    finished: list[TuningJob] = []
    runner = TuningRunner(store, tmp_path / "runs", lambda job: [*worker(code, store.path), job.id],
                          on_finished=finished.append)
    store.create(JobSpec(name="j", dataset_id="0" * 16))
    job = store.claim_next()
    assert job is not None
    return runner.run(job), finished


def test_a_worker_that_records_success(store: JobStore, tmp_path: Path) -> None:
    ended, finished = run_one(store, tmp_path, "store.finish(job_id, 'succeeded', result={'x': 1})")
    assert ended.state == "succeeded" and ended.result == {"x": 1}
    assert [j.state for j in finished] == ["succeeded"]


def test_a_crashing_worker_fails_the_job_with_its_output(store: JobStore, tmp_path: Path) -> None:
    ended, _ = run_one(store, tmp_path, "print('loading...'); raise SystemExit('out of memory, boom')")
    assert ended.state == "failed"
    assert "code 1" in (ended.error or "") and "boom" in (ended.error or "")


def test_a_killed_worker_leaves_the_job_interrupted_and_resumable(store: JobStore,
                                                                   tmp_path: Path) -> None:
    code = ("import os, signal; store.update(job_id, step=2, total_steps=9); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    ended, _ = run_one(store, tmp_path, code)
    assert ended.state == "interrupted" and ended.resumable
    assert "SIGKILL" in (ended.error or "") and "2/9" in (ended.error or "")
    assert store.requeue(ended.id).state == "queued"


def _queue_until_training(store: JobStore, runner: TuningRunner) -> TuningJob:
    """Queue a job, wake `runner`'s background loop, and wait (30 s at most) until its worker
    reports the training phase."""
    job = store.create(JobSpec(name="j", dataset_id="0" * 16))
    runner.wake()
    deadline = time.time() + 30
    while store.get(job.id).phase != "training" and time.time() < deadline:
        time.sleep(0.05)
    return job


def test_stop_sends_sigterm_and_the_background_loop_runs_queued_jobs(store: JobStore,
                                                                     tmp_path: Path) -> None:
    code = ("import signal, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: (store.finish(job_id, 'interrupted', "
            "error='shutdown'), sys.exit(0)))\n"
            "store.update(job_id, phase='training')\n"
            "time.sleep(60)\n")
    runner = TuningRunner(store, tmp_path / "runs", lambda job: [*worker(code, store.path), job.id],
                          poll_s=0.1)
    runner.start()
    try:
        job = _queue_until_training(store, runner)
        assert store.get(job.id).state == "running"
        assert store.runner_alive()
    finally:
        runner.stop(timeout=20)
    ended = store.get(job.id)
    assert (ended.state, ended.error) == ("interrupted", "shutdown")
    assert not store.runner_alive()


def cancel_and_time(store: JobStore, runner: TuningRunner, code_phase: str) -> tuple[TuningJob, float]:
    """Start a job in `runner`'s background loop, cancel it once its worker reports `code_phase`;
    (the job as it ended, seconds from the cancel to its final state)."""
    runner.start()
    try:
        job = store.create(JobSpec(name="j", dataset_id="0" * 16))
        runner.wake()
        deadline = time.time() + 60
        while store.get(job.id).phase != code_phase and time.time() < deadline:
            time.sleep(0.05)
        assert store.get(job.id).state == "running"
        started = time.monotonic()
        store.cancel(job.id)
        while not store.get(job.id).finished and time.monotonic() - started < 60:
            time.sleep(0.05)
        return store.get(job.id), time.monotonic() - started
    finally:
        runner.stop(timeout=20)


def test_cancel_sends_sigterm_and_the_worker_ends_the_job_cancelled(store: JobStore,
                                                                   tmp_path: Path) -> None:
    code = ("import signal, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: (store.finish(job_id, 'cancelled'), sys.exit(0)))\n"
            "store.update(job_id, phase='loading')\n"
            "time.sleep(60)\n")
    runner = TuningRunner(store, tmp_path / "runs", lambda job: [*worker(code, store.path), job.id],
                          poll_s=0.1)
    ended, seconds = cancel_and_time(store, runner, "loading")
    assert (ended.state, ended.error) == ("cancelled", None)
    assert seconds < 5  # SIGTERM within the runner's poll, not at the worker's next step


def test_a_worker_stuck_past_the_grace_is_killed_and_the_job_cancelled(store: JobStore,
                                                                       tmp_path: Path) -> None:
    code = ("import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"  # deaf, as in one long native call
            "store.update(job_id, phase='tokenizing', step=0, total_steps=9)\n"
            "time.sleep(60)\n")
    runner = TuningRunner(store, tmp_path / "runs", lambda job: [*worker(code, store.path), job.id],
                          poll_s=0.1)
    ended, seconds = cancel_and_time(store, runner, "tokenizing")
    assert ended.state == "cancelled" and ended.resumable
    assert "did not stop within 5 s" in (ended.error or "") and "tokenizing" in (ended.error or "")
    assert CANCEL_GRACE_S <= seconds < 15
    assert store.requeue(ended.id).state == "queued"


def test_the_background_runner_keeps_its_heartbeat_during_a_long_job(
        store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tuning.jobs.RUNNER_STALE_S", 1.0)
    code = "store.update(job_id, phase='training'); import time; time.sleep(4)\n"
    runner = TuningRunner(store, tmp_path / "runs", lambda job: [*worker(code, store.path), job.id],
                          poll_s=0.2)
    runner.start()
    try:
        job = _queue_until_training(store, runner)
        time.sleep(1.5)  # past the (shortened) staleness: only a heartbeat during the job counts
        assert store.get(job.id).state == "running" and store.runner_alive()
    finally:
        runner.stop(timeout=20)


def test_a_job_claimed_by_a_killed_runner_is_ended_while_the_next_one_idles(
        store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server was killed between claiming a job and starting its worker (found by bench.soak):
    the job was left running, with no worker, past the next start's recovery (it looked freshly
    claimed), and a cancel of it was never acted on. The idle runner now ends it: cancelled, since
    a cancel was asked for."""
    monkeypatch.setattr("tuning.jobs.CLAIM_GRACE_S", 0.5)
    monkeypatch.setattr("tuning.runner.RECOVER_EVERY_S", 0.2)
    orphan = store.create(JobSpec(name="orphan", dataset_id="0" * 16))
    assert store.claim_next() is not None  # ... and the runner that claimed it dies here
    store.cancel(orphan.id)
    runner = TuningRunner(store, tmp_path / "runs", lambda job: [*worker("", store.path), job.id],
                          poll_s=0.1)
    runner.start()  # the claim is too fresh for start-up's recovery
    try:
        assert store.get(orphan.id).state == "running"
        deadline = time.time() + 10
        while store.get(orphan.id).state == "running" and time.time() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop(timeout=20)
    ended = store.get(orphan.id)
    assert ended.state == "cancelled" and ended.resumable
