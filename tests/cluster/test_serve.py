"""`ragtune serve --cluster`: two reader replicas behind Ray Serve answer the same; writes reach
the one writer and every replica sees them."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.settings import Settings
from tests.cluster.fixtures import fake_services, make_corpus

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[httpx.Client]:
    from api import cluster as on_cluster
    from cluster.serve import shutdown

    settings = Settings(data_dir=tmp_path / "data", port=_free_port(), chunk_size=64, chunk_overlap=8,
                        min_score=0.2, generator="scripted", answer_style="span", answerability=False,
                        cluster="local", cluster_workers=1)  # uploads are ingested on the cluster too
    on_cluster.serve(settings, "local", 2, services=fake_services)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.port}", timeout=30) as client:
            yield client
    finally:
        shutdown()


def _ingest(client: httpx.Client, docs: Path) -> None:
    assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
    files = [("files", (p.name, p.read_bytes())) for p in sorted(docs.iterdir())]
    r = client.post("/v1/collections/kb/documents", files=files)
    assert r.status_code == 202, r.text
    job = r.json()
    deadline = time.monotonic() + 60
    while job["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = client.get(f"/v1/ingest-jobs/{job['job_id']}").json()
    assert job["state"] == "succeeded", job


def _by_replica(client: httpx.Client, path: str, body: dict[str, Any],
                tries: int = 40) -> dict[str, list[Any]]:
    """The answers to the same request, by the replica that gave each, until two have answered."""
    seen: dict[str, list[Any]] = {}
    for _ in range(tries):
        r = client.post(path, json=body)
        assert r.status_code == 200, r.text
        seen.setdefault(r.headers["x-ragtune-replica"], []).append(r.json())
        if len(seen) >= 2 and sum(map(len, seen.values())) >= 6:
            break
    return seen


def test_two_replicas_answer_the_same(served: httpx.Client, tmp_path: Path) -> None:
    _ingest(served, make_corpus(tmp_path / "docs", files=4))

    hits = _by_replica(served, "/v1/collections/kb/search", {"query": "badges renewed", "k": 3})
    assert len(hits) == 2, "both replicas answered"
    answers = [h for replies in hits.values() for h in replies]
    assert all(a == answers[0] for a in answers) and answers[0]["hits"]

    asked = _by_replica(served, "/v1/collections/kb/ask", {"question": "When are badges renewed?"})
    replies = [a for replies in asked.values() for a in replies]
    assert len(asked) == 2 and all(a["answer"] == replies[0]["answer"] for a in replies)
    assert replies[0]["citations"][0]["source"] == "bundle.zip/inner/a.md"

    # a delete goes to the writer; both readers stop finding the document at once
    doc = served.get("/v1/collections/kb/documents").json()
    gone = next(d["doc_id"] for d in doc["documents"] if d["source"] == "bundle.zip/inner/a.md")
    assert served.delete(f"/v1/collections/kb/documents/{gone}").status_code == 204
    after = _by_replica(served, "/v1/collections/kb/search", {"query": "badges renewed", "k": 3})
    assert all(h["source"] != "bundle.zip/inner/a.md"
               for replies in after.values() for reply in replies for h in reply["hits"])
