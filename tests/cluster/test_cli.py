"""The command line and the cluster: Ray stays unloaded without one, and a cluster that does not
answer is a clear error at once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api import cli
from api.corpus import Corpus
from tests.cluster.conftest import ROOT
from tests.cluster.fixtures import make_corpus
from tests.fakes import FakeEmbedder

WITHOUT_CLUSTER = """
import json, sys
from api import cli
from api.corpus import Corpus
from tests.fakes import FakeEmbedder
from api import cli_collections
cli.open_corpus = cli_collections.open_corpus = lambda s: Corpus(s, embedder=FakeEmbedder())
codes = [cli.main(["ingest", sys.argv[1], "-c", "kb", "--create", "-q"]), cli.main(["collections"])]
try:
    cli.main(["--help"])
except SystemExit as exc:
    codes.append(exc.code)
print(json.dumps({"codes": codes, "ray": sorted(m for m in sys.modules if m.split(".")[0] == "ray")}))
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ragtune_without_a_cluster_never_imports_ray(tmp_path: Path) -> None:
    docs = make_corpus(tmp_path / "docs", files=2)
    done = subprocess.run([sys.executable, "-c", WITHOUT_CLUSTER, str(docs)], cwd=ROOT, text=True,
                          capture_output=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "RAGTUNE_DATA_DIR": str(tmp_path / "data"),
                               "RAGTUNE_URL": "local", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["codes"] == [1, 0, 0], "broken.pdf fails; the rest works"
    assert out["ray"] == []


def test_an_unreachable_cluster_is_a_clear_error_not_a_hang(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(cli, "open_corpus", lambda s: Corpus(s, embedder=FakeEmbedder()))
    docs = make_corpus(tmp_path / "docs", files=1)
    address = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    assert cli.main(["ingest", str(docs), "-c", "kb", "--create", "--cluster", address]) == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert f"no Ray cluster answers at {address}" in err and "ray start --head" in err
    assert not (tmp_path / "data" / "collections" / "kb").exists(), "nothing was written"

    assert cli.main(["ingest", str(docs), "-c", "kb", "--cluster", "nowhere"]) == 2
    assert "must be HOST:PORT" in capsys.readouterr().err


@pytest.mark.usefixtures("ray_cluster")
def test_a_tuning_worker_with_a_cluster_trains_through_ray_train(tmp_path: Path) -> None:
    from api.settings import Settings
    from api.tuning_worker import make_hooks
    from cluster.train import RayTrainer
    from generation.adapter_registry import AdapterRegistry

    settings = Settings(data_dir=tmp_path / "data", cluster="local", train_workers=3)
    corpus = Corpus(settings, embedder=FakeEmbedder())
    hooks = make_hooks(settings, corpus, AdapterRegistry(tmp_path / "adapters"))
    assert hooks.trainer is not None
    trainer = hooks.trainer("native")
    assert isinstance(trainer, RayTrainer) and trainer.workers == 3
    assert make_hooks(Settings(data_dir=tmp_path / "data"), corpus,
                      AdapterRegistry(tmp_path / "adapters")).trainer is None


@pytest.mark.usefixtures("ray_cluster")
def test_a_server_with_a_cluster_ingests_uploads_on_it(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import cluster.ingest
    from api.services import Services
    from api.settings import Settings

    calls: list[Path] = []
    real = cluster.ingest.ingest_on_cluster

    def spy(collection, make_embedder, paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.extend(paths)
        return real(collection, make_embedder, paths, *args, **kwargs)

    monkeypatch.setattr(cluster.ingest, "ingest_on_cluster", spy)
    svc = Services(Settings(data_dir=tmp_path / "data", cluster="local", cluster_workers=1),
                   embedder=FakeEmbedder())
    svc.create_collection("kb")
    worker = svc.ingest_worker
    job_id, folder = worker.new_job_dir()
    (folder / "a.md").write_text("# Badges\n\nBadges are renewed every year at the front desk.")
    worker.submit(job_id, "kb", ["a.md"], {})
    worker.start()
    deadline = time.monotonic() + 60
    while (job := worker.store.get(job_id)) is not None and job.state in ("queued", "running") \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    svc.close()
    assert job is not None and job.state == "succeeded", job
    assert calls and calls[0].name == "a.md" and svc.catalog.get("kb").stats()["documents"] == 1
