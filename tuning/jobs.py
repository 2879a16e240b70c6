"""Tuning jobs: a persistent queue in SQLite shared by the API, the CLI and the worker processes.

A job is queued with its JobSpec, claimed by one runner (atomically, so two runners never take the
same job), and run by a worker process that writes its progress here. States:

    queued -> running -> succeeded | failed | cancelled | interrupted

`interrupted` means the worker stopped without finishing (killed, crashed, or shut down with the
service); such a job, like a failed or cancelled one, can be queued again to resume from its last
checkpoint.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrieval.owners import pid_alive

from .errors import InvalidConfig, JobNotFound, JobStateError

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")
RESUMABLE = ("failed", "cancelled", "interrupted")
PROBE = "linear_probe"
RUNNER_STALE_S = 10.0
CLAIM_GRACE_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS tuning_jobs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL, spec TEXT NOT NULL,
    phase TEXT, step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER NOT NULL DEFAULT 0,
    loss REAL, eval_loss REAL, tokens_per_s REAL, eta_s REAL, epoch REAL,
    error TEXT, result TEXT, pid INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0, resume INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tuning_runners (pid INTEGER PRIMARY KEY, heartbeat REAL NOT NULL);
"""


@dataclass
class GateSpec:
    """What the job's gate checks after training: every answer on the held-out prompts must match
    `regex`, stay within `max_chars` and contain `required_phrase` (each optional); and, when
    `eval_collection` is set, answer accuracy on that knowledge base's golden questions."""

    regex: str | None = None
    max_chars: int | None = None
    required_phrase: str | None = None
    eval_collection: str | None = None
    eval_questions: str | None = None  # a stored dataset id (kb_dev format)
    prompts: int = 50
    max_new_tokens: int = 96
    promote_if_better: bool = False

    def __post_init__(self) -> None:
        import re

        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise InvalidConfig(f"check regex {self.regex!r} does not compile: {exc}") from None
        if self.max_chars is not None and self.max_chars < 1:
            raise InvalidConfig(f"check max_chars must be >= 1 (got {self.max_chars})")
        if bool(self.eval_collection) != bool(self.eval_questions):
            raise InvalidConfig("eval_collection and eval_questions go together: the golden questions "
                                "are asked of that collection")
        if not 1 <= self.prompts <= 1000:
            raise InvalidConfig(f"gate prompts must be in 1..1000 (got {self.prompts})")
        if not 1 <= self.max_new_tokens <= 4096:
            raise InvalidConfig(f"gate max_new_tokens must be in 1..4096 (got {self.max_new_tokens})")
        if self.promote_if_better and not self.has_checks:
            raise InvalidConfig("promote_if_better needs a behaviour check (regex, max_chars or "
                                "required_phrase): adherence is what must rise")

    @property
    def has_checks(self) -> bool:
        return any(v is not None for v in (self.regex, self.max_chars, self.required_phrase))

    @property
    def declared(self) -> bool:
        return self.has_checks or bool(self.eval_collection)


@dataclass
class JobSpec:
    """What to train: the method, the stored dataset(s), TrainConfig overrides and the gate."""

    name: str
    dataset_id: str
    method: str = "lora"
    model: str = ""
    valid_dataset_id: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    gate: GateSpec = field(default_factory=GateSpec)
    label_column: str = "label"
    plan: dict[str, Any] | None = None  # tuning.sizing.RunPlan, made when the job was submitted
    mix_dataset_id: str | None = None  # examples added to the training split only

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        data = dict(data)
        data["gate"] = GateSpec(**(data.get("gate") or {}))
        return cls(**data)


@dataclass(frozen=True)
class JobRequest:
    """A job as a user asks for it (over HTTP or `ragtune tune start`), before it is planned into a
    JobSpec: the method, the base model and the gate may be left to their defaults."""

    name: str
    dataset_id: str | None
    method: str | None = None
    model: str | None = None
    """A model directory (or hub id) to train on; None: the serving generator."""
    valid_dataset_id: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    label_column: str = "label"
    checks: dict[str, Any] | None = None
    eval_collection: str | None = None
    eval_questions: str | None = None
    gate_prompts: int = 50
    gate_max_new_tokens: int = 96
    promote_if_better: bool = False
    mix_dataset_id: str | None = None
    """A stored chat dataset mixed into the training split (mix_share of it), e.g. grounded-QA
    examples that keep the served adapter's behaviour."""


@dataclass
class TuningJob:
    id: str
    name: str
    state: str
    spec: JobSpec
    phase: str | None = None
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    epoch: float | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    pid: int | None = None
    attempts: int = 0
    cancel_requested: bool = False
    resume: bool = False
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str = ""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def resumable(self) -> bool:
        return self.state in RESUMABLE

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["spec"] = asdict(self.spec)
        return out


def _now() -> str:
    return datetime.now(UTC).isoformat()


class JobStore:
    """The tuning job table; every method opens its own short transaction, so it is safe to use
    from several threads and processes at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        finally:
            conn.close()

    @contextmanager
    def _db(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction; a write one takes the lock at once, a read one never waits for writers
        (WAL), so progress polls do not contend with the worker's updates."""
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    @staticmethod
    def _job(row: sqlite3.Row) -> TuningJob:
        data = dict(row)
        data["spec"] = JobSpec.from_dict(json.loads(data["spec"]))
        data["result"] = json.loads(data["result"]) if data["result"] else None
        data["cancel_requested"] = bool(data["cancel_requested"])
        data["resume"] = bool(data["resume"])
        return TuningJob(**data)

    def create(self, spec: JobSpec) -> TuningJob:
        job_id = uuid.uuid4().hex[:12]
        now = _now()
        with self._db() as db:
            db.execute("INSERT INTO tuning_jobs (id, name, state, spec, created_at, updated_at) "
                       "VALUES (?, ?, 'queued', ?, ?, ?)", (job_id, spec.name, spec.to_json(), now, now))
        return self.get(job_id)

    def find(self, job_id: str) -> TuningJob | None:
        with self._db(write=False) as db:
            row = db.execute("SELECT * FROM tuning_jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row) if row else None

    def get(self, job_id: str) -> TuningJob:
        job = self.find(job_id)
        if job is None:
            raise JobNotFound(f"tuning job {job_id!r} not found")
        return job

    def list(self, limit: int = 100) -> list[TuningJob]:  # noqa: A003
        with self._db(write=False) as db:
            rows = db.execute("SELECT * FROM tuning_jobs ORDER BY created_at DESC LIMIT ?",
                              (limit,)).fetchall()
        return [self._job(r) for r in rows]

    def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (states with none are absent), counted by SQLite."""
        with self._db(write=False) as db:
            rows = db.execute("SELECT state, COUNT(*) FROM tuning_jobs GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    def active_with_name(self, name: str) -> TuningJob | None:
        with self._db(write=False) as db:
            row = db.execute("SELECT * FROM tuning_jobs WHERE name = ? AND state IN "
                             "('queued', 'running') LIMIT 1", (name,)).fetchone()
        return self._job(row) if row else None

    def claim_next(self) -> TuningJob | None:
        """The oldest queued job, now marked running; None when the queue is empty."""
        with self._db() as db:
            row = db.execute("SELECT id FROM tuning_jobs WHERE state = 'queued' "
                             "ORDER BY created_at LIMIT 1").fetchone()
            if row is None:
                return None
            now = _now()
            db.execute("UPDATE tuning_jobs SET state = 'running', phase = 'starting', error = NULL, "
                       "attempts = attempts + 1, started_at = COALESCE(started_at, ?), "
                       "finished_at = NULL, updated_at = ? WHERE id = ?", (now, now, row["id"]))
        return self.get(row["id"])

    def update(self, job_id: str, **values: Any) -> None:
        allowed = {"phase", "step", "total_steps", "loss", "eval_loss", "tokens_per_s", "eta_s",
                   "epoch", "pid"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)} on a tuning job")
        cols = ", ".join(f"{k} = ?" for k in values)
        with self._db() as db:
            db.execute(f"UPDATE tuning_jobs SET {cols}, updated_at = ? WHERE id = ?",  # noqa: S608
                       (*values.values(), _now(), job_id))

    def finish(self, job_id: str, state: str, error: str | None = None,
               result: dict[str, Any] | None = None) -> None:
        if state not in FINISHED:
            raise ValueError(f"{state!r} is not a final state ({', '.join(FINISHED)})")
        now = _now()
        with self._db() as db:
            db.execute("UPDATE tuning_jobs SET state = ?, error = ?, result = COALESCE(?, result), "
                       "phase = NULL, pid = NULL, finished_at = ?, updated_at = ? WHERE id = ?",
                       (state, error, json.dumps(result) if result is not None else None, now, now,
                        job_id))

    def cancel(self, job_id: str) -> TuningJob:
        """A queued job is cancelled at once; a running one is asked to stop, and its runner stops
        the worker within seconds (TuningRunner: training keeps a checkpoint; the job ends cancelled)."""
        job = self.get(job_id)
        if job.finished:
            raise JobStateError(f"tuning job {job_id} is already {job.state}")
        with self._db() as db:
            db.execute("UPDATE tuning_jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?",
                       (_now(), job_id))
            db.execute("UPDATE tuning_jobs SET state = 'cancelled', finished_at = ? "
                       "WHERE id = ? AND state = 'queued'", (_now(), job_id))
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        with self._db(write=False) as db:
            row = db.execute("SELECT cancel_requested FROM tuning_jobs WHERE id = ?",
                             (job_id,)).fetchone()
        return bool(row and row[0])

    def requeue(self, job_id: str) -> TuningJob:
        """Queue a failed, cancelled or interrupted job again, to resume from its last checkpoint."""
        job = self.get(job_id)
        if job.state not in RESUMABLE:
            raise JobStateError(f"tuning job {job_id} is {job.state}; only a "
                                f"{', '.join(RESUMABLE)} job can be resumed")
        with self._db() as db:
            db.execute("UPDATE tuning_jobs SET state = 'queued', resume = 1, cancel_requested = 0, "
                       "error = NULL, finished_at = NULL, updated_at = ? WHERE id = ?",
                       (_now(), job_id))
        return self.get(job_id)

    def recover(self) -> builtins.list[str]:
        """End running jobs whose worker process is gone (or never started: a runner killed between
        claiming a job and starting its worker): cancelled when a cancel was asked for, else
        interrupted; their ids."""
        def gone(job: TuningJob) -> bool:
            if job.pid is None:  # claimed a moment ago, its worker not started yet?
                updated = datetime.fromisoformat(job.updated_at)
                return (datetime.now(UTC) - updated).total_seconds() > CLAIM_GRACE_S
            return not pid_alive(job.pid)

        lost = [j for j in self.list(limit=10_000) if j.state == "running" and gone(j)]
        for job in lost:
            if job.cancel_requested:
                self.finish(job.id, "cancelled")
            else:
                self.finish(job.id, "interrupted", error="the worker stopped before the job finished "
                            "(service restart or crash); resume it to continue from its last checkpoint")
        return [j.id for j in lost]

    def heartbeat(self, pid: int) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO tuning_runners (pid, heartbeat) VALUES (?, ?)",
                       (pid, time.time()))

    def drop_runner(self, pid: int) -> None:
        with self._db() as db:
            db.execute("DELETE FROM tuning_runners WHERE pid = ?", (pid,))

    def runner_alive(self) -> bool:
        """Whether some process (the API) is running queued jobs right now."""
        with self._db(write=False) as db:
            rows = db.execute("SELECT pid, heartbeat FROM tuning_runners").fetchall()
        return any(time.time() - r["heartbeat"] < RUNNER_STALE_S and pid_alive(r["pid"]) for r in rows)
