"""HTTP round trips: collections, uploads as jobs, documents, search, and error bodies."""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from ingest.jobs import IngestWorker
from retrieval.catalog import Catalog
from tests.fakes import FakeEmbedder
from tests.ingest.fixtures import make_pdf


def _wait(client: TestClient, job_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def _upload(client: TestClient, files: list[tuple[str, bytes]], name: str = "kb",
            **data: str) -> Any:
    return client.post(f"/v1/collections/{name}/documents",
                       files=[("files", (n, b)) for n, b in files], data=data)


def test_ingest_jobs_answer_at_their_name_and_at_the_earlier_path(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
    job_id = _upload(client, [("a.txt", b"Pumps move water uphill.")]).json()["job_id"]
    done = _wait(client, job_id)
    assert client.get(f"/v1/ingest-jobs/{job_id}").json() == done
    assert [j["job_id"] for j in client.get("/v1/ingest-jobs").json()] == \
        [j["job_id"] for j in client.get("/v1/jobs").json()]
    assert job_id in [j["job_id"] for j in client.get("/v1/ingest-jobs").json()]
    assert client.get("/v1/ingest-jobs/nope").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/ingest-jobs/{job_id}" in paths and "/v1/jobs/{job_id}" not in paths


def test_round_trip(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.post("/v1/collections", json={"name": "kb"})
    assert r.status_code == 201, r.text
    assert r.json()["chunk_size"] == 64

    r = _upload(client, [("pumps.md", b"# Pumps\n\nThe blue pump moves water uphill."),
                         ("valves.txt", b"Valves stop water flowing backwards.")],
                metadata='{"team": "ops"}')
    assert r.status_code == 202, r.text
    job = _wait(client, r.json()["job_id"])
    assert job["state"] == "succeeded" and job["files_done"] == 2, job
    assert job["chunks_added"] >= 2 and job["errors"] == []

    docs = client.get("/v1/collections/kb/documents").json()
    assert docs["total"] == 2
    pump = next(d for d in docs["documents"] if d["source"] == "pumps.md")
    assert pump["metadata"]["team"] == "ops"
    assert client.get(f"/v1/collections/kb/documents/{pump['doc_id']}").json() == pump

    r = client.post("/v1/collections/kb/search", json={"query": "blue pump uphill", "k": 2})
    hits = r.json()["hits"]
    assert hits[0]["source"] == "pumps.md" and hits[0]["doc_id"] == pump["doc_id"]
    assert set(hits[0]) == {"chunk_id", "doc_id", "source", "page", "text", "score", "metadata"}

    r = client.post("/v1/collections/kb/search",
                    json={"query": "blue pump", "k": 5, "filter": {"source": "valves.txt"}})
    assert [h["source"] for h in r.json()["hits"]] == ["valves.txt"]

    again = _wait(client, _upload(client, [("pumps.md",
                                            b"# Pumps\n\nThe blue pump moves water uphill.")]
                                  ).json()["job_id"])
    assert again["chunks_added"] == 0 and again["results"]["unchanged"] == 1

    assert client.delete(f"/v1/collections/kb/documents/{pump['doc_id']}").status_code == 204
    assert client.get(f"/v1/collections/kb/documents/{pump['doc_id']}").status_code == 404
    assert client.get("/v1/collections").json()[0]["documents"] == 1
    assert client.delete("/v1/collections/kb").status_code == 204
    assert client.get("/v1/collections").json() == []


def test_per_file_errors_are_reported_in_the_job(client: TestClient) -> None:
    client.post("/v1/collections", json={"name": "kb"})
    r = _upload(client, [("good.txt", b"fine text here"), ("broken.pdf", b"%PDF-1.4 nonsense"),
                         ("empty.txt", b"   ")])
    job = _wait(client, r.json()["job_id"])
    assert job["state"] == "succeeded"
    failed = {e["source"]: e["reason"] for e in job["errors"]}
    assert set(failed) == {"broken.pdf", "empty.txt"}
    assert "PDF" in failed["broken.pdf"]


def test_zip_upload(client: TestClient) -> None:
    client.post("/v1/collections", json={"name": "kb"})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("docs/a.md", "# A\n\nalpha text")
        zf.writestr("docs/b.txt", "beta text")
    job = _wait(client, _upload(client, [("bundle.zip", buf.getvalue())]).json()["job_id"])
    assert job["state"] == "succeeded" and job["files_done"] == 2
    sources = {d["source"] for d in client.get("/v1/collections/kb/documents").json()["documents"]}
    assert sources == {"bundle.zip/docs/a.md", "bundle.zip/docs/b.txt"}


def _error(r: Any, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["detail"], str) and body["error"]
    for w in words:
        assert w in body["detail"], body


def test_errors_are_json_a_person_can_act_on(client: TestClient) -> None:
    _error(client.post("/v1/collections/nope/search", json={"query": "x"}), 404, "nope")
    _error(_upload(client, [("a.txt", b"x")], name="nope"), 404, "nope")
    client.post("/v1/collections", json={"name": "kb"})
    _error(client.post("/v1/collections", json={"name": "kb"}), 409, "already exists")
    _error(client.post("/v1/collections", json={"name": "../etc"}), 422, "collection name")
    _error(client.post("/v1/collections", json={"name": "x", "chunk_size": 64,
                                                "chunk_overlap": 64}), 422, "chunk_overlap")
    _error(_upload(client, [("a.exe", b"MZ")]), 415, ".pdf", ".md")
    _error(_upload(client, [("big.txt", b"x" * 20_000)]), 413, "big.txt", "MB")
    _error(_upload(client, [("a.txt", b"x")], metadata="[1]"), 422, "metadata")
    _error(client.post("/v1/collections/kb/search", json={"query": "x", "k": 0}), 422, "k")
    _error(client.post("/v1/collections/kb/search", json={"k": 3}), 422, "query")
    _error(client.get("/v1/collections/kb/documents/deadbeef"), 404, "deadbeef")
    _error(client.get("/v1/jobs/nope"), 404, "nope")
    assert client.get("/v1/collections/kb/documents").json()["total"] == 0, \
        "rejected uploads store nothing"
    assert client.get("/docs").status_code == 200


def test_upload_of_unknown_size_is_still_capped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from fastapi import UploadFile

    from api.errors import UploadTooLarge
    from api.uploads import copy_bounded as _copy_bounded

    upload = UploadFile(io.BytesIO(b"x" * 3000), filename="big.txt", size=None)
    with pytest.raises(UploadTooLarge, match="big.txt"):
        _copy_bounded(upload, tmp_path / "big.txt", limit=1000, limit_mb=0.001)
    small = UploadFile(io.BytesIO(b"y" * 500), filename="ok.txt", size=None)
    _copy_bounded(small, tmp_path / "ok.txt", limit=1000, limit_mb=0.001)
    assert (tmp_path / "ok.txt").read_bytes() == b"y" * 500


def test_web_page_is_served(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(/static/[\w.-]+)"', r.text)
    assert "/static/app.js" in assets and "/static/app.css" in assets
    scripts = {}
    for name in ("app.js", "core.js", "answer.js", "kb.js", "tune.js", "models.js", "app.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200, name
        scripts[name] = asset.text
    assert "/v1/collections" in scripts["kb.js"] and "/ask" in scripts["answer.js"]
    assert "http://" not in "".join(scripts.values()) + r.text, "no CDN: everything is served here"
    assert client.get("/static/../app.py").status_code == 404


def test_a_job_that_read_nothing_fails_and_says_why(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
    job = _wait(client, _upload(client, [("prog.txt", b"\x7fELF\x02\x01" + bytes(64))]).json()["job_id"])
    assert job["state"] == "failed" and "no file could be ingested" in job["note"]
    assert "ELF executable" in job["errors"][0]["reason"]
    mixed = _wait(client, _upload(client, [("ok.txt", b"Valves close slowly."),
                                           ("bad.txt", b"PK\x03\x04" + bytes(30))]).json()["job_id"])
    assert mixed["state"] == "succeeded" and [e["source"] for e in mixed["errors"]] == ["bad.txt"]


def test_upload_folders_left_by_a_kill_are_swept_at_start(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    old, young = uploads / "deadbeef", uploads / "fresh"
    for folder in (old, young):
        folder.mkdir(parents=True)
        (folder / "half.pdf").write_bytes(b"%PDF-1.4 half")
    hour_ago = time.time() - 7200
    os.utime(old, (hour_ago, hour_ago))
    worker = IngestWorker(tmp_path, Catalog(tmp_path), FakeEmbedder)
    worker.start()
    worker.stop()
    assert not old.exists() and young.exists()  # a young folder may be an upload in progress


def test_a_document_is_found_by_keyword_as_soon_as_its_job_succeeded(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
    _wait(client, _upload(client, [("a.txt", b"Pumps move water uphill.")]).json()["job_id"])
    query = {"query": "zeolite", "k": 3, "mode": "keyword"}
    assert client.post("/v1/collections/kb/search", json=query).json()["hits"] == []  # builds BM25
    job = _wait(client, _upload(client, [("b.txt", b"Zeolite beds soften the water.")]).json()["job_id"])
    assert job["state"] == "succeeded"
    hits = client.post("/v1/collections/kb/search", json=query).json()["hits"]
    assert [h["source"] for h in hits] == ["b.txt"]  # within BM25's rebuild throttle, not after it


def test_a_multi_file_upload_ingests_the_valid_files_and_reports_each_refused_one(
        client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
    r = _upload(client, [("a.txt", b"Pumps move water uphill."), ("tool.exe", b"MZ"),
                         ("b.md", b"# Valves\n\nValves stop the flow."), ("c.docx", b"PK")])
    assert r.status_code == 202, r.text
    assert [e["source"] for e in r.json()["errors"]] == ["tool.exe", "c.docx"]
    job = _wait(client, r.json()["job_id"])
    assert job["state"] == "succeeded" and (job["files_done"], job["files_total"]) == (4, 4)
    reasons = {e["source"]: e["reason"] for e in job["errors"]}
    assert set(reasons) == {"tool.exe", "c.docx"} and ".pdf" in reasons["tool.exe"]
    assert client.get("/v1/collections/kb/documents").json()["total"] == 2


def test_documents_carry_their_page_count_for_pdfs_only(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
    pdf = make_pdf(["Pumps move water uphill.", None, "Valves stop backflow."])
    job = _wait(client, _upload(client, [("manual.pdf", pdf), ("notes.txt", b"Fine text.")])
                .json()["job_id"])
    assert job["state"] == "succeeded", job
    docs = {d["source"]: d for d in client.get("/v1/collections/kb/documents").json()["documents"]}
    assert (docs["manual.pdf"]["pages"], docs["notes.txt"]["pages"]) == (3, None)
    one = client.get(f"/v1/collections/kb/documents/{docs['manual.pdf']['doc_id']}").json()
    assert one["pages"] == 3
    assert (job["current_pages_done"], job["current_pages_total"]) == (None, None)
