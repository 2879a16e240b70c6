"""Recovery is the server's start-up, once: a CLI command or tuning worker opening the same data dir
(Services in another process) disturbs no running work; the server's start-up still cleans up after
processes that are gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from api.settings import Settings
from generation.eval_runs import EvalRun, EvalStore
from retrieval.owners import current_owner
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL

REPO = Path(__file__).resolve().parents[2]


def _eval(data_dir: Path, run_id: str, owner: str | None) -> None:
    EvalStore(data_dir / "evals").save(EvalRun(id=run_id, collection="kb", state="running",
                                               questions=3, owner=owner,
                                               created_at="2024-01-01T00:00:00+00:00"))


def _creating(data_dir: Path, owner: str, started: float) -> Path:
    """A collection create's temporary folder, as `owner` leaves it mid-way."""
    path = data_dir / "collections" / f".new-{owner}-{int(started)}-0123abcd"
    path.mkdir(parents=True)
    return path


def _old_model_import(data_dir: Path) -> Path:
    """A model import's temporary folder, old enough to have been left by a crash (or to be a
    very slow import: only the server's start-up may decide)."""
    path = data_dir / "models" / ".tmp-import-0123abcd"
    path.mkdir(parents=True)
    os.utime(path, (time.time() - 7 * 24 * 3600,) * 2)
    return path


def test_services_in_another_process_disturb_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    _eval(settings.data_dir, "live", current_owner())
    creating = _creating(settings.data_dir, current_owner(), time.time())
    importing = _old_model_import(settings.data_dir)
    code = ("from api.services import Services\nfrom api.settings import Settings\n"
            f"svc = Services(Settings(data_dir={str(settings.data_dir)!r}))\n"
            "svc.catalog.names(); svc.evals.all(); svc.tuning.store.list(); svc.model_registry()\n"
            "svc.close()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, text=True, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    run = EvalStore(settings.data_dir / "evals").get("live")
    assert run is not None and run.state == "running", "another process failed a running eval"
    assert creating.is_dir(), "another process removed a create in progress"
    assert importing.is_dir(), "opening the model registry swept an import"


def test_server_start_up_recovers_what_dead_processes_left(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_owner = f"{int(dead.stdout)}-0123abcd"
    _eval(settings.data_dir, "lost", dead_owner)
    _eval(settings.data_dir, "live", current_owner())
    abandoned = _creating(settings.data_dir, dead_owner, time.time() - 3600)
    creating = _creating(settings.data_dir, current_owner(), time.time())
    crashed_import = _old_model_import(settings.data_dir)

    app = create_app(settings, Services(settings, embedder=FakeEmbedder()))
    with TestClient(app, base_url=LOCAL_URL) as client:
        lost = client.get("/v1/evals/lost").json()
        live = client.get("/v1/evals/live").json()

    assert (lost["state"], lost["error"]) == ("failed", "interrupted by a restart")
    assert live["state"] == "running"
    assert not abandoned.exists() and creating.is_dir()
    assert not crashed_import.exists()
