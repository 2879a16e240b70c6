"""Over HTTP: a file over RAGTUNE_MAX_FILE_CHUNKS fails alone, named in its job's errors, and a job
record carries the current file's progress."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from api.settings import Settings
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL


def _wait(client: TestClient, job_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/v1/ingest-jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job {job_id} did not finish: {job}"
        time.sleep(0.05)
    return job


def test_a_file_over_the_chunk_limit_fails_alone(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", chunk_size=16, chunk_overlap=2,
                        max_file_chunks=5, ingest_workers=3)
    assert settings.max_file_seconds == 600 and Settings(data_dir=tmp_path).ingest_workers == 2
    services = Services(settings, embedder=FakeEmbedder())
    assert len(services.ingest_worker._threads) == 3
    with TestClient(create_app(settings, services), base_url=LOCAL_URL) as client:
        assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
        big = " ".join(f"pump{i} valve{i} tank{i}." for i in range(100)).encode()
        files = [("files", ("big.txt", big)), ("files", ("small.txt", b"Valves stop backflow."))]
        job = _wait(client, client.post("/v1/collections/kb/documents", files=files).json()["job_id"])
    assert job["state"] == "succeeded" and job["results"]["added"] == 1
    assert [e["source"] for e in job["errors"]] == ["big.txt"]
    assert "more than 5 chunks" in job["errors"][0]["reason"]
    assert "RAGTUNE_MAX_FILE_CHUNKS" in job["errors"][0]["reason"]
    assert (job["current_file"], job["current_chunks"], job["current_chunks_total"]) == (None, 0, 0)
