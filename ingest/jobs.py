"""Background ingest jobs: a persistent job table (SQLite) and a small pool of worker threads.

Uploaded files are saved under the job's directory before the job is queued; a worker ingests
them and removes them. Jobs of different collections run side by side, so one slow file cannot
hold up another collection; a collection runs one job at a time, in the order they came, so its
writes stay ordered. Jobs that were queued or running when the process stopped are queued again
at start-up (ingest is idempotent: identical content is skipped), so an upload is never lost.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrieval.catalog import Catalog
from retrieval.embedder import Embedder

from .archive import ArchiveLimits
from .pipeline import FileLimits, FileProgress, FileResult, IngestReport, ingest_paths

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, collection TEXT NOT NULL, state TEXT NOT NULL, files TEXT NOT NULL,
    metadata TEXT NOT NULL, files_total INTEGER NOT NULL, files_done INTEGER NOT NULL,
    chunks_added INTEGER NOT NULL, errors TEXT NOT NULL, results TEXT NOT NULL, note TEXT,
    created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    current_file TEXT, current_chunks INTEGER NOT NULL DEFAULT 0,
    current_chunks_total INTEGER NOT NULL DEFAULT 0,
    current_pages_done INTEGER, current_pages_total INTEGER
);
"""
# columns added since the first release: added to an older job table when it is opened
ADDED_COLUMNS = {
    "current_file": "TEXT",
    "current_chunks": "INTEGER NOT NULL DEFAULT 0",
    "current_chunks_total": "INTEGER NOT NULL DEFAULT 0",
    "current_pages_done": "INTEGER",
    "current_pages_total": "INTEGER",
}
ACTIVE = ("queued", "running")
ORPHAN_AGE_S = 3600.0  # an upload folder older than this with no active job was left by a kill


@dataclass
class Job:
    id: str
    collection: str
    state: str
    files: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    files_total: int = 0
    files_done: int = 0
    chunks_added: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    current_file: str | None = None
    """The file being read, chunked or embedded now (while running)."""
    current_chunks: int = 0
    """Chunks of `current_file` embedded so far."""
    current_chunks_total: int = 0
    """Chunks of `current_file` made so far: final once its chunking ends."""
    current_pages_done: int | None = None
    """Pages of `current_file` read so far, when it is a PDF."""
    current_pages_total: int | None = None
    """Pages in `current_file`, when it is a PDF."""

    def clear_current(self) -> None:
        """No file in progress."""
        self.current_file, self.current_chunks, self.current_chunks_total = None, 0, 0
        self.current_pages_done = self.current_pages_total = None


def _now() -> str:
    return datetime.now(UTC).isoformat()


class JobStore:
    """Job records in SQLite, safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, kind in ADDED_COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")

    def insert(self, job: Job) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, collection, state, files, metadata, files_total, files_done, "
                "chunks_added, errors, results, note, created_at, started_at, finished_at, "
                "current_file, current_chunks, current_chunks_total, current_pages_done, "
                "current_pages_total) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.collection, job.state, json.dumps(job.files),
                 json.dumps(job.metadata), job.files_total, job.files_done, job.chunks_added,
                 json.dumps(job.errors), json.dumps(job.results), job.note, job.created_at,
                 job.started_at, job.finished_at, job.current_file, job.current_chunks,
                 job.current_chunks_total, job.current_pages_done, job.current_pages_total))

    def update(self, job: Job) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state=?, files_total=?, files_done=?, chunks_added=?, errors=?, "
                "results=?, note=?, started_at=?, finished_at=?, current_file=?, "
                "current_chunks=?, current_chunks_total=?, current_pages_done=?, "
                "current_pages_total=? WHERE id=?",
                (job.state, job.files_total, job.files_done, job.chunks_added,
                 json.dumps(job.errors), json.dumps(job.results), job.note, job.started_at,
                 job.finished_at, job.current_file, job.current_chunks, job.current_chunks_total,
                 job.current_pages_done, job.current_pages_total, job.id))

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def recent(self, limit: int = 100) -> list[Job]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [_job(r) for r in rows]

    def active(self) -> list[Job]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state IN ('queued','running') ORDER BY created_at"
            ).fetchall()
        return [_job(r) for r in rows]

    def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (states with none are absent), counted by SQLite."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: n for state, n in rows}


def _job(row: tuple[Any, ...]) -> Job:
    return Job(id=row[0], collection=row[1], state=row[2], files=json.loads(row[3]),
               metadata=json.loads(row[4]), files_total=row[5], files_done=row[6],
               chunks_added=row[7], errors=json.loads(row[8]), results=json.loads(row[9]),
               note=row[10], created_at=row[11], started_at=row[12], finished_at=row[13],
               current_file=row[14], current_chunks=row[15], current_chunks_total=row[16],
               current_pages_done=row[17], current_pages_total=row[18])


class IngestWorker:
    """Runs queued jobs in `workers` daemon threads, at most one job per collection at a time and
    each collection's jobs in the order they came: each ingests its uploaded files into its
    collection of `catalog` within `file_limits`, with the embedder that `embedder` returns (called
    when a job runs, so the model loads on the first job, not at start-up). `ingest` does the
    work: `ingest_paths`, or a function of the same arguments that runs it elsewhere (a cluster)."""

    def __init__(self, root: Path, catalog: Catalog, embedder: Callable[[], Embedder],
                 archive_limits: ArchiveLimits | None = None,
                 file_limits: FileLimits | None = None, workers: int = 2,
                 ingest: Callable[..., IngestReport] = ingest_paths) -> None:
        if workers < 1:
            raise ValueError(f"workers {workers!r} must be >= 1")
        self.root = root
        self.uploads = root / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(root / "jobs.sqlite")
        self._catalog = catalog
        self._embedder = embedder
        self._archive_limits = archive_limits
        self._file_limits = file_limits
        self._ingest = ingest
        self._waiting: list[tuple[str, str]] = []  # (job id, collection), oldest first
        self._busy: set[str] = set()  # collections with a job running
        self._wake = threading.Condition()
        self._stopping = False
        self._threads = [threading.Thread(target=self._loop, name=f"ingest-worker-{i}",
                                          daemon=True) for i in range(workers)]
        self._started = False

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        active = self.store.active()
        for job in active:
            if (self.uploads / job.id).is_dir():
                job.state, job.note = "queued", "resumed after a restart"
                job.clear_current()
                self.store.update(job)
                self._enqueue(job)
            else:
                self._finish(job, "interrupted", "the server stopped; its uploaded files are gone")
        self._sweep_orphans({job.id for job in active})
        for thread in self._threads:
            thread.start()

    def _sweep_orphans(self, active: set[str], min_age_s: float = ORPHAN_AGE_S) -> int:
        """Remove upload folders that no queued or running job owns: left by a kill while an
        upload was being copied (before its job was recorded). Young ones may belong to an upload
        in progress in another process, so only folders older than `min_age_s` go."""
        removed, now = 0, time.time()
        for path in self.uploads.iterdir():
            if path.name in active or not path.is_dir():
                continue
            try:
                if now - path.stat().st_mtime < min_age_s:
                    continue
            except FileNotFoundError:
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        return removed

    def stop(self, timeout_s: float = 30.0) -> None:
        """Let running jobs finish (up to `timeout_s`) and start no more; those still queued are
        queued again at the next start."""
        if not self._started:
            return
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def new_job_dir(self) -> tuple[str, Path]:
        job_id = uuid.uuid4().hex
        path = self.uploads / job_id
        path.mkdir()
        return job_id, path

    def submit(self, job_id: str, collection: str, files: list[str],
               metadata: dict[str, Any], rejected: list[dict[str, str]] | None = None) -> Job:
        """Queue `files` (saved under the job's upload folder). `rejected`: files of the same
        upload refused on arrival ({"source", "reason"}), reported among the job's errors."""
        refused = [{**r, "stage": "upload"} for r in rejected or []]
        job = Job(id=job_id, collection=collection, state="queued", files=files,
                  metadata=metadata, files_total=len(files) + len(refused),
                  files_done=len(refused), errors=refused, created_at=_now())
        self.store.insert(job)
        self._enqueue(job)
        return job

    def _enqueue(self, job: Job) -> None:
        with self._wake:
            self._waiting.append((job.id, job.collection))
            self._wake.notify_all()

    def _next(self) -> tuple[str, str] | None:
        """Wait for the oldest waiting job whose collection has none running, and claim that
        collection; None once stopping."""
        with self._wake:
            while not self._stopping:
                for i, (job_id, collection) in enumerate(self._waiting):
                    if collection not in self._busy:
                        del self._waiting[i]
                        self._busy.add(collection)
                        return job_id, collection
                self._wake.wait()
            return None

    def _loop(self) -> None:
        while (claimed := self._next()) is not None:
            job_id, collection = claimed
            try:
                job = self.store.get(job_id)
                if job is not None and job.state == "queued":
                    self._run(job)
            finally:
                with self._wake:
                    self._busy.discard(collection)
                    self._wake.notify_all()

    def _run(self, job: Job) -> None:
        job.state, job.started_at = "running", _now()
        job.errors = [e for e in job.errors if e.get("stage") == "upload"]  # refused on arrival
        job.files_done, job.chunks_added = len(job.errors), 0
        self.store.update(job)

        def on_result(result: FileResult) -> None:
            job.files_done += 1
            job.files_total = max(job.files_total, job.files_done)  # archives hold several
            job.chunks_added += result.chunks
            if result.error:
                job.errors.append({"source": result.source, "reason": result.error})
            if result.source == job.current_file:
                job.clear_current()
            self.store.update(job)

        def on_progress(progress: FileProgress) -> None:  # about once a second
            job.current_file = progress.source
            job.current_chunks, job.current_chunks_total = progress.embedded, progress.chunks
            job.current_pages_done = progress.pages_done
            job.current_pages_total = progress.pages_total
            self.store.update(job)

        try:
            embedder = self._embedder()
            report = self._ingest(self._catalog.open(job.collection, embedder), embedder,
                                  [self.uploads / job.id / f for f in job.files], job.metadata,
                                  archive_limits=self._archive_limits,
                                  file_limits=self._file_limits, on_result=on_result,
                                  on_progress=on_progress)
        except Exception as exc:  # noqa: BLE001 - a failed job must not stop the worker
            self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
            return
        job.results = {**report.summary(), "files": [r.to_dict() for r in report.results]}
        job.files_done = max(job.files_done, job.files_total)
        kept = sum(job.results.get(k, 0) for k in ("added", "replaced", "unchanged"))
        if kept == 0:  # nothing was read: not a success, whatever the reason
            said = (f"no file could be ingested ({len(job.errors)} failed; see errors)"
                    if job.errors else "the upload held no documents")
            self._finish(job, "failed", said)
            return
        self._finish(job, "succeeded", job.note)

    def _finish(self, job: Job, state: str, note: str | None) -> None:
        job.state, job.note, job.finished_at = state, note, _now()
        job.clear_current()
        self.store.update(job)
        shutil.rmtree(self.uploads / job.id, ignore_errors=True)
