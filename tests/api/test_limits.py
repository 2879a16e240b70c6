"""Request bodies within bounds (api/limits.py): a size cap per request enforced while the body
arrives, and a timeout for a body that stalls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.limits import BodyLimit
from api.services import Services
from api.settings import Settings
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", max_request_mb=0.01)  # about 10 KB


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, Services(settings, embedder=FakeEmbedder()))
    with TestClient(app, base_url=LOCAL_URL) as c:
        yield c


def test_an_announced_body_over_the_cap_is_refused_before_it_is_read(client: TestClient,
                                                                      settings: Settings) -> None:
    assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
    files = [("files", (f"f{i}.txt", b"word " * 1000)) for i in range(3)]  # 15 KB in all
    r = client.post("/v1/collections/kb/documents", files=files)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert "RAGTUNE_MAX_REQUEST_MB" in r.json()["detail"]
    assert list((settings.data_dir / "uploads").iterdir()) == []  # nothing spooled
    assert client.get("/v1/ingest-jobs").json() == []
    small = client.post("/v1/collections/kb/documents", files=[("files", ("a.txt", b"fine"))])
    assert small.status_code == 202


def test_a_chunked_body_is_counted_as_it_arrives(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "kb", "pad": "'
        for _ in range(40):
            yield b"x" * 1024
        yield b'"}'

    r = client.post("/v1/collections", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "so far" in r.json()["detail"]
    assert client.get("/v1/collections/kb").status_code == 404


def test_a_stalled_body_gets_408() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive())["type"] == "http.request":
            pass
        raise RuntimeError("client went away")  # what a route does on a disconnect

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(5)
        return {"type": "http.request", "body": b"late", "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/x", "headers": [(b"content-length", b"4")]}
    asyncio.run(BodyLimit(app, max_bytes=100, timeout_s=0.05)(scope, receive, send))
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["error"] == "timeout"


def test_a_reply_streamed_for_longer_than_the_body_timeout_is_sent_whole() -> None:
    """After the body, a receive waits for the disconnect (Starlette's StreamingResponse listens
    for it while it streams): the body timeout must not end that wait, or every event stream
    longer than RAGTUNE_BODY_TIMEOUT_S is cut mid-reply."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    inner = FastAPI()

    @inner.post("/slow")
    async def slow() -> StreamingResponse:
        async def events() -> Any:
            for i in range(4):
                await asyncio.sleep(0.1)
                yield f"data: {i}\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    with TestClient(BodyLimit(inner, max_bytes=100, timeout_s=0.05), base_url=LOCAL_URL) as c:
        r = c.post("/slow", json={"q": 1})
    assert r.status_code == 200
    assert r.text == "".join(f"data: {i}\n\n" for i in range(4))
