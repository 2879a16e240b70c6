"""Stored evaluations across processes: opening the store elsewhere leaves running runs alone; the
explicit recovery fails only the runs whose process is gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from generation.eval_runs import EvalRun, EvalStore
from retrieval.owners import current_owner

REPO = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """Another process on this checkout, as a CLI command or a tuning worker would be."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, text=True, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def _run(store: EvalStore, run_id: str, owner: str | None, state: str = "running") -> None:
    store.save(EvalRun(id=run_id, collection="kb", state=state, questions=3,
                       created_at="2024-01-01T00:00:00+00:00", owner=owner))


def test_opening_the_store_in_another_process_leaves_a_running_evaluation_alone(
        tmp_path: Path) -> None:
    store = EvalStore(tmp_path)
    _run(store, "live", current_owner())  # this process is evaluating it
    _python(f"from pathlib import Path\nfrom generation.eval_runs import EvalStore\n"
            f"EvalStore(Path({str(tmp_path)!r})).all()")
    run = store.get("live")
    assert run is not None and run.state == "running" and run.error is None


def test_recovery_fails_only_runs_whose_process_is_gone(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    store = EvalStore(tmp_path)
    _run(store, "live", current_owner())
    _run(store, "dead", f"{int(dead.stdout)}-0123abcd")
    _run(store, "earlier", f"{os.getpid()}-ffffffff")  # this pid, in a process before a restart
    _run(store, "legacy", None, state="queued")  # written before runs recorded their process
    _run(store, "done", None, state="succeeded")

    assert sorted(store.recover_interrupted()) == ["dead", "earlier", "legacy"]

    states = {r.id: (r.state, r.error) for r in store.all()}
    assert states["live"] == ("running", None) and states["done"] == ("succeeded", None)
    for run_id in ("dead", "earlier", "legacy"):
        assert states[run_id] == ("failed", "interrupted by a restart")
    assert store.recover_interrupted() == []


def test_the_run_start_returns_is_not_changed_by_the_evaluation_thread(tmp_path: Path) -> None:
    """The reply to POST /v1/evals is serialised from the run `start` returns: were the thread to
    update that object, a reply could carry a summary without its results (it did, once in CI)."""
    import threading
    import time

    from generation.evaluation import GoldQuestion
    from generation.rag import Answer

    store, release = EvalStore(tmp_path), threading.Event()

    def ask(question: str) -> Answer:
        release.wait(10)
        return Answer(answer="The passages do not say.", citations=[], refused=True,
                      grounded=False, support_score=0.0, passages=[])

    questions = [GoldQuestion(id=f"q{i}", question="Who?", answers=(), match="any",
                              answerable=False) for i in range(2)]
    run = store.start("kb", questions, {}, ask)
    release.set()
    deadline = time.monotonic() + 10
    while (stored := store.get(run.id)) is None or stored.state != "succeeded":
        assert time.monotonic() < deadline, "the evaluation did not finish"
        time.sleep(0.02)
    assert len(stored.results) == 2 and stored.summary["refusal_rate"] == 1.0
    assert (run.state, run.summary, run.results) == ("queued", {}, [])
