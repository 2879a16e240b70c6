"""Inputs that once crashed the server with a plain-text 500 now get a 4xx JSON body naming the
problem; and an unexpected bug, a bare ValueError included, still answers JSON (a 500, its traceback
logged)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from api.settings import Settings
from ingest.errors import IngestError
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL
from tuning.errors import InvalidConfig

NESTED = "[" * 5000 + "]" * 5000
RECORD = b'{"text": "a", "label": "b"}\n'


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(settings, Services(settings, embedder=FakeEmbedder()))
    with TestClient(app, base_url=LOCAL_URL, raise_server_exceptions=False) as c:
        assert c.post("/v1/collections", json={"name": "kb"}).status_code == 201
        yield c


def _wait(client: TestClient, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/ingest-jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


CASES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "a 300-character upload file name": (
        "POST", "/v1/collections/kb/documents",
        {"files": {"files": ("a" * 300 + ".txt", b"hello", "text/plain")}}, "bytes; the limit"),
    "a job body nested 5,000 deep": (
        "POST", "/v1/tuning/jobs",
        {"content": '{"name": "x", "config": ' + NESTED + "}",
         "headers": {"content-type": "application/json"}}, "nested too deeply"),
    "a job config form field nested 5,000 deep": (
        "POST", "/v1/tuning/jobs", {"files": {"file": ("d.jsonl", RECORD)}, "data": {"config": NESTED}},
        "nested too deeply"),
    "a job config that is a list": (
        "POST", "/v1/tuning/jobs", {"files": {"file": ("d.jsonl", RECORD)}, "data": {"config": "[1]"}},
        "must be a JSON object"),
    "a job body that is a list": (
        "POST", "/v1/tuning/jobs", {"json": [1, 2]}, "must be a JSON object"),
    "a dataset record nested 5,000 deep": (
        "POST", "/v1/tuning/datasets",
        {"files": {"file": ("d.jsonl", ('{"text": ' + NESTED + "}\n").encode())}}, "nested too deeply"),
    "a dataset named .": (
        "POST", "/v1/tuning/datasets", {"files": {"file": (".", RECORD)}}, "empty or hidden"),
    "a dataset named ..": (
        "POST", "/v1/tuning/datasets", {"files": {"file": ("..", RECORD)}}, "empty or hidden"),
    "upload metadata nested 5,000 deep": (
        "POST", "/v1/collections/kb/documents",
        {"files": {"files": ("a.txt", b"hello", "text/plain")}, "data": {"metadata": NESTED}},
        "metadata must be"),
    "an offset past SQLite's integers": (
        "GET", "/v1/collections/kb/documents?offset=99999999999999999999", {}, "offset"),
    "a metadata filter key that is not a plain name": (
        "POST", "/v1/collections/kb/search",
        {"json": {"query": "x", "filter": {"metadata": {'a"b': 1}}}}, "metadata filter key"),
    "few_shot without examples": (
        "POST", "/v1/collections/kb/ask", {"json": {"question": "x", "mode": "few_shot"}},
        "needs at least one example"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_a_4xx_json_error(client: TestClient, case: str) -> None:
    method, path, kwargs, says = CASES[case]
    response = client.request(method, path, **kwargs)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    body = response.json()
    assert body["error"] and says in body["detail"], body


def test_bidi_characters_are_stripped_from_a_stored_file_name(client: TestClient) -> None:
    response = client.post("/v1/collections/kb/documents",
                           files={"files": ("re\u202eport\u200f.txt", b"hello there", "text/plain")})
    assert response.status_code == 202, response.text
    assert _wait(client, response.json()["job_id"])["state"] == "succeeded"
    docs = client.get("/v1/collections/kb/documents").json()["documents"]
    assert [d["source"] for d in docs] == ["report.txt"]


def test_an_unexpected_error_is_still_json(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services, "search", broken)
    response = client.post("/v1/collections/kb/search", json={"query": "x"})
    assert response.status_code == 500
    assert response.json()["error"] == "internal" and "RuntimeError" in response.json()["detail"]
    assert "disk on fire" not in response.text  # internals stay in the log


def test_an_unexpected_error_is_logged_with_its_traceback(client: TestClient,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("an internal invariant broke")

    monkeypatch.setattr(services, "search", broken)
    with caplog.at_level(logging.ERROR, logger="ragtune.api"):
        response = client.post("/v1/collections/kb/search", json={"query": "x"})
    assert response.status_code == 500
    logged = [r for r in caplog.records if r.name == "ragtune.api"]
    assert logged and "/v1/collections/kb/search" in logged[0].getMessage()
    assert logged[0].exc_info and logged[0].exc_info[1] is not None
    assert "an internal invariant broke" in caplog.text  # the traceback is in the log


def test_a_bare_value_error_is_a_500_not_a_422(client: TestClient,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]

    def broken(*_: object, **__: object) -> None:
        raise ValueError("an internal invariant broke")  # a bug, not the client's mistake

    monkeypatch.setattr(services, "search", broken)
    response = client.post("/v1/collections/kb/search", json={"query": "x"})
    assert response.status_code == 500
    assert response.json()["error"] == "internal" and "ValueError" in response.json()["detail"]
    assert "invariant" not in response.text


def test_a_domain_error_for_a_user_mistake_is_a_422(client: TestClient,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]

    def refused(*_: object, **__: object) -> None:
        raise InvalidConfig("--lr 5 must be in (0, 1)")

    monkeypatch.setattr(services, "search", refused)
    response = client.post("/v1/collections/kb/search", json={"query": "x"})
    assert response.status_code == 422
    assert response.json() == {"error": "invalid", "detail": "--lr 5 must be in (0, 1)"}


def test_error_bodies_show_paths_relative_to_the_data_dir(client: TestClient,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    root = services.settings.data_dir

    def broken(*_: object, **__: object) -> None:
        raise IngestError(f"{root.resolve()}/collections/kb/index.faiss is damaged")

    monkeypatch.setattr(services, "search", broken)
    response = client.post("/v1/collections/kb/search", json={"query": "x"})
    assert response.status_code == 422
    assert response.json()["detail"] == "collections/kb/index.faiss is damaged"
