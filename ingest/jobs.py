"""Background ingest jobs: a persistent job table (SQLite) and one worker thread.

Uploaded files are saved under the job's directory before the job is queued; the worker ingests
them and removes them. Jobs that were queued or running when the process stopped are queued again
at start-up (ingest is idempotent: identical content is skipped), so an upload is never lost.
"""

from __future__ import annotations

import json
import queue
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
from .pipeline import FileResult, ingest_paths

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, collection TEXT NOT NULL, state TEXT NOT NULL, files TEXT NOT NULL,
    metadata TEXT NOT NULL, files_total INTEGER NOT NULL, files_done INTEGER NOT NULL,
    chunks_added INTEGER NOT NULL, errors TEXT NOT NULL, results TEXT NOT NULL, note TEXT,
    created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT
);
"""
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


def _now() -> str:
    return datetime.now(UTC).isoformat()


class JobStore:
    """Job records in SQLite, safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def insert(self, job: Job) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.collection, job.state, json.dumps(job.files),
                 json.dumps(job.metadata), job.files_total, job.files_done, job.chunks_added,
                 json.dumps(job.errors), json.dumps(job.results), job.note, job.created_at,
                 job.started_at, job.finished_at))

    def update(self, job: Job) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state=?, files_done=?, chunks_added=?, errors=?, results=?, "
                "note=?, started_at=?, finished_at=? WHERE id=?",
                (job.state, job.files_done, job.chunks_added, json.dumps(job.errors),
                 json.dumps(job.results), job.note, job.started_at, job.finished_at, job.id))

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


def _job(row: tuple[Any, ...]) -> Job:
    return Job(id=row[0], collection=row[1], state=row[2], files=json.loads(row[3]),
               metadata=json.loads(row[4]), files_total=row[5], files_done=row[6],
               chunks_added=row[7], errors=json.loads(row[8]), results=json.loads(row[9]),
               note=row[10], created_at=row[11], started_at=row[12], finished_at=row[13])


class IngestWorker:
    """Runs queued jobs one at a time in a daemon thread: each ingests its uploaded files into its
    collection of `catalog` with the embedder that `embedder` returns (called when a job runs, so
    the model loads on the first job, not at start-up)."""

    def __init__(self, root: Path, catalog: Catalog, embedder: Callable[[], Embedder],
                 archive_limits: ArchiveLimits | None = None) -> None:
        self.root = root
        self.uploads = root / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(root / "jobs.sqlite")
        self._catalog = catalog
        self._embedder = embedder
        self._archive_limits = archive_limits
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="ingest-worker", daemon=True)
        self._started = False

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        active = self.store.active()
        for job in active:
            if (self.uploads / job.id).is_dir():
                job.state, job.note = "queued", "resumed after a restart"
                self.store.update(job)
                self._queue.put(job.id)
            else:
                self._finish(job, "interrupted", "the server stopped; its uploaded files are gone")
        self._sweep_orphans({job.id for job in active})
        self._thread.start()

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

    def stop(self) -> None:
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout=30)

    def new_job_dir(self) -> tuple[str, Path]:
        job_id = uuid.uuid4().hex
        path = self.uploads / job_id
        path.mkdir()
        return job_id, path

    def submit(self, job_id: str, collection: str, files: list[str],
               metadata: dict[str, Any]) -> Job:
        job = Job(id=job_id, collection=collection, state="queued", files=files,
                  metadata=metadata, files_total=len(files), created_at=_now())
        self.store.insert(job)
        self._queue.put(job_id)
        return job

    def _loop(self) -> None:
        while (job_id := self._queue.get()) is not None:
            job = self.store.get(job_id)
            if job is not None and job.state == "queued":
                self._run(job)

    def _run(self, job: Job) -> None:
        job.state, job.started_at = "running", _now()
        job.files_done, job.chunks_added, job.errors = 0, 0, []
        self.store.update(job)

        def on_result(result: FileResult) -> None:
            job.files_done += 1
            job.files_total = max(job.files_total, job.files_done)  # archives hold several
            job.chunks_added += result.chunks
            if result.error:
                job.errors.append({"source": result.source, "reason": result.error})
            self.store.update(job)

        try:
            embedder = self._embedder()
            report = ingest_paths(self._catalog.open(job.collection, embedder), embedder,
                                  [self.uploads / job.id / f for f in job.files], job.metadata,
                                  archive_limits=self._archive_limits, on_result=on_result)
        except Exception as exc:  # noqa: BLE001 - a failed job must not stop the worker
            self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
            return
        job.results = report.summary()
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
        self.store.update(job)
        shutil.rmtree(self.uploads / job.id, ignore_errors=True)
