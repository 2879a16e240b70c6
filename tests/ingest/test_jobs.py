"""The ingest worker pool: collections do not wait for each other, a collection's jobs keep their
order, a long file shows its progress, and queued or running jobs survive a restart."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ingest.jobs import IngestWorker, Job, JobStore
from retrieval.catalog import Catalog
from tests.fakes import FakeEmbedder
from tests.helpers import make_collection
from tests.ingest.fixtures import make_pdf

SLOW_WORD = "glacial"


class GateEmbedder(FakeEmbedder):
    """Embeds a batch holding SLOW_WORD only once `gate` is set: a file as slow as a test needs."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.held = threading.Event()

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if any(SLOW_WORD in t for t in texts):
            self.held.set()
            assert self.gate.wait(timeout=30), "the test never opened the gate"
        return super().embed_batch(texts)


def _submit(worker: IngestWorker, collection: str, name: str, text: str) -> str:
    job_id, folder = worker.new_job_dir()
    (folder / name).write_text(text)
    return worker.submit(job_id, collection, [name], {}).id


def _job(worker: IngestWorker, job_id: str) -> Job:
    job = worker.store.get(job_id)
    assert job is not None
    return job


def _wait(worker: IngestWorker, job_id: str, states: tuple[str, ...] = ("succeeded", "failed"),
          timeout: float = 20) -> Job:
    deadline = time.monotonic() + timeout
    while (job := _job(worker, job_id)).state not in states:
        assert time.monotonic() < deadline, f"job {job_id} stayed {job.state}"
        time.sleep(0.02)
    return job


@pytest.fixture
def embedder() -> GateEmbedder:
    return GateEmbedder()


@pytest.fixture
def worker(tmp_path: Path, embedder: GateEmbedder) -> IngestWorker:
    for name in ("a", "b"):
        make_collection(tmp_path, embedder, name=name, chunk_size=16, chunk_overlap=2)
    return IngestWorker(tmp_path, Catalog(tmp_path), lambda: embedder, workers=2)


def test_a_small_upload_to_b_finishes_while_a_slow_job_on_a_runs(
        worker: IngestWorker, embedder: GateEmbedder) -> None:
    worker.start()
    try:
        slow_text = " ".join(f"{SLOW_WORD} pump{i} moves water." for i in range(30))
        slow = _submit(worker, "a", "slow.txt", slow_text)
        assert embedder.held.wait(timeout=20), "the slow job never reached its embedding"
        after = _submit(worker, "a", "after.txt", "Valves stop backflow.")
        tiny = _submit(worker, "b", "tiny.txt", "Pumps move water uphill.")

        assert _wait(worker, tiny).state == "succeeded"
        running = _job(worker, slow)
        assert running.state == "running" and _job(worker, after).state == "queued"
        assert running.current_file == "slow.txt" and running.current_chunks_total >= 1

        embedder.gate.set()
        done, then = _wait(worker, slow), _wait(worker, after)
        assert (done.state, then.state) == ("succeeded", "succeeded")
        assert done.finished_at is not None and then.started_at is not None
        assert then.started_at >= done.finished_at, "a collection's jobs run in order"
        assert done.current_file is None and done.current_chunks == 0
    finally:
        embedder.gate.set()
        worker.stop()


def test_one_worker_runs_jobs_one_at_a_time_in_order(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    for name in ("a", "b"):
        make_collection(tmp_path, emb, name=name)
    worker = IngestWorker(tmp_path, Catalog(tmp_path), lambda: emb, workers=1)
    ids = [_submit(worker, c, f"{i}.txt", f"Pump {i} moves water.") for i, c in enumerate("abab")]
    worker.start()
    try:
        jobs = [_wait(worker, job_id) for job_id in ids]
    finally:
        worker.stop()
    assert [j.state for j in jobs] == ["succeeded"] * 4
    for before, after in zip(jobs, jobs[1:], strict=False):
        assert after.started_at is not None and before.finished_at is not None
        assert after.started_at >= before.finished_at


def test_queued_and_running_jobs_are_run_after_a_restart(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    for name in ("a", "b"):
        make_collection(tmp_path, emb, name=name)
    first = IngestWorker(tmp_path, Catalog(tmp_path), lambda: emb)  # never started: "killed"
    queued = [_submit(first, c, "x.txt", f"Tank {c} holds water.") for c in "ab"]
    running = _submit(first, "a", "y.txt", "Gauges read pressure.")
    job = _job(first, running)
    job.state, job.current_file, job.current_chunks_total = "running", "y.txt", 3
    first.store.update(job)

    again = IngestWorker(tmp_path, Catalog(tmp_path), lambda: emb)
    again.start()
    try:
        jobs = [_wait(again, job_id) for job_id in [*queued, running]]
    finally:
        again.stop()
    assert [j.state for j in jobs] == ["succeeded"] * 3
    assert jobs[2].note == "resumed after a restart" and jobs[2].current_file is None


def test_a_job_table_from_before_progress_is_opened_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, collection TEXT NOT NULL, state TEXT "
                   "NOT NULL, files TEXT NOT NULL, metadata TEXT NOT NULL, files_total INTEGER NOT "
                   "NULL, files_done INTEGER NOT NULL, chunks_added INTEGER NOT NULL, errors TEXT "
                   "NOT NULL, results TEXT NOT NULL, note TEXT, created_at TEXT NOT NULL, "
                   "started_at TEXT, finished_at TEXT)")
        db.execute("INSERT INTO jobs VALUES ('j1','kb','succeeded','[\"a.txt\"]','{}',1,1,3,'[]',"
                   "'{}',NULL,'2026-01-01T00:00:00',NULL,NULL)")
    store = JobStore(path)
    old = store.get("j1")
    assert old is not None and (old.chunks_added, old.current_file, old.current_chunks) == (3, None, 0)
    old.current_file, old.current_chunks = "a.txt", 2
    store.update(old)
    assert (store.get("j1") or old).current_chunks == 2


def test_workers_must_be_at_least_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        IngestWorker(tmp_path, Catalog(tmp_path), FakeEmbedder, workers=0)


def test_jobs_are_counted_by_state(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    assert store.count_by_state() == {}
    for i, state in enumerate(["queued", "queued", "running", "succeeded", "failed", "queued"]):
        store.insert(Job(id=f"j{i}", collection="kb", state=state, files=[], created_at=str(i)))
    counted = store.count_by_state()
    assert counted == Counter(job.state for job in store.recent(limit=100))
    assert counted == {"queued": 3, "running": 1, "succeeded": 1, "failed": 1}


def test_a_pdf_job_reports_its_pages_read(worker: IngestWorker, embedder: GateEmbedder) -> None:
    worker.start()
    try:
        job_id, folder = worker.new_job_dir()
        pages = [f"{SLOW_WORD} page {i} says pumps move water." for i in range(1, 8)]
        (folder / "big.pdf").write_bytes(make_pdf([*pages[:3], None, *pages[3:]]))
        worker.submit(job_id, "a", ["big.pdf"], {})
        assert embedder.held.wait(timeout=20), "the PDF job never reached its embedding"
        running = _job(worker, job_id)
        assert running.current_file == "big.pdf"
        assert (running.current_pages_done, running.current_pages_total) == (8, 8)
        embedder.gate.set()
        done = _wait(worker, job_id)
        assert done.state == "succeeded"
        assert (done.current_pages_done, done.current_pages_total) == (None, None)
    finally:
        embedder.gate.set()
        worker.stop()
