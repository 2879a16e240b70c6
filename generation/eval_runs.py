"""Stored answer evaluations: each run is a JSON file written atomically, run in a worker thread.

A run is queued, then running, then succeeded or failed; its summary and per-question results stay
on disk so they can be listed and compared later. A run records the process running it; opening the
store changes nothing, and `recover_interrupted` (the server, once at start-up) fails only the runs
whose process is gone.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrieval.owners import current_owner, owner_gone

from .evaluation import GoldQuestion, evaluate
from .rag import Answer


@dataclass
class EvalRun:
    id: str
    collection: str
    state: str
    questions: int
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    created_at: str = ""
    finished_at: str | None = None
    owner: str | None = None  # the process running it (retrieval.owners); None in older records


class EvalStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def recover_interrupted(self) -> list[str]:
        """Fail the queued or running runs whose process has stopped (a run cut off by a restart
        cannot be resumed mid-way); their ids. Runs of live processes are left running."""
        lost = [run for run in self.all()
                if run.state in ("queued", "running") and owner_gone(run.owner)]
        for run in lost:
            run.state, run.error = "failed", "interrupted by a restart"
            run.finished_at = datetime.now(UTC).isoformat()
            self.save(run)
        return [run.id for run in lost]

    def save(self, run: EvalRun) -> None:
        path = self.root / f"{run.id}.json"
        tmp = path.with_suffix(".tmp")
        with self._lock:
            tmp.write_text(json.dumps(asdict(run)))
            os.replace(tmp, path)

    def get(self, run_id: str) -> EvalRun | None:
        path = self.root / f"{run_id}.json"
        if not run_id.isalnum() or not path.exists():
            return None
        return EvalRun(**json.loads(path.read_text()))

    def all(self) -> list[EvalRun]:
        runs = [EvalRun(**json.loads(p.read_text())) for p in self.root.glob("*.json")]
        return sorted(runs, key=lambda r: r.created_at, reverse=True)

    def start(self, collection: str, questions: list[GoldQuestion], config: dict[str, Any],
              ask: Callable[[str], Answer]) -> EvalRun:
        run = EvalRun(id=uuid.uuid4().hex, collection=collection, state="queued",
                      questions=len(questions), config=config,
                      created_at=datetime.now(UTC).isoformat(), owner=current_owner())
        self.save(run)
        # the thread changes its own copy: the caller's (serialised into the reply) must not
        # change under it, half updated (a summary without its results)
        threading.Thread(target=self._run, args=(replace(run), questions, ask),
                         daemon=True, name=f"eval-{run.id[:8]}").start()
        return run

    def _run(self, run: EvalRun, questions: list[GoldQuestion],
             ask: Callable[[str], Answer]) -> None:
        run.state = "running"
        self.save(run)
        try:
            run.summary, run.results = evaluate(questions, ask)
            run.state = "succeeded"
        except Exception as exc:  # noqa: BLE001 - recorded on the run for the user to read
            run.state, run.error = "failed", f"{type(exc).__name__}: {exc}"
        run.finished_at = datetime.now(UTC).isoformat()
        self.save(run)
