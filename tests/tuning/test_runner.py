"""The runner: worker processes that crash, are killed or finish; the runner and its caller live on."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tuning.jobs import JobSpec, JobStore, TuningJob
from tuning.runner import TuningRunner

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
        job = store.create(JobSpec(name="j", dataset_id="0" * 16))
        runner.wake()
        deadline = time.time() + 30
        while store.get(job.id).phase != "training" and time.time() < deadline:
            time.sleep(0.1)
        assert store.get(job.id).state == "running"
        assert store.runner_alive()
    finally:
        runner.stop(timeout=20)
    ended = store.get(job.id)
    assert (ended.state, ended.error) == ("interrupted", "shutdown")
    assert not store.runner_alive()
