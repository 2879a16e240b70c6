"""A client that leaves stops its generation: the route runs under `client_gone`, which is set
when the connection drops (JSON replies) or the event stream ends (SSE)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from api.settings import Settings
from generation.batching import client_gone
from generation.errors import ServerBusy
from generation.generator import Messages, SamplingConfig
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL

PIECES = 400
PIECE_S = 0.02  # a whole answer takes 8 s; a stopped one far less


class SlowGenerator:
    """Streams a word every PIECE_S seconds until done or until its client has gone."""

    name = "slow"
    context_length = 2048

    def __init__(self) -> None:
        self.saw_gone = threading.Event()
        self.gone: threading.Event | None = None
        self.pieces = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def prompt_tokens(self, messages: Messages) -> int:
        return sum(self.count_tokens(m["content"]) for m in messages)

    def stream(self, messages: Messages, sampling: SamplingConfig,
               adapter: str | None = None) -> Iterator[str]:
        gone = self.gone = client_gone.get()  # read when the stream is made, as the real one does

        def words() -> Iterator[str]:
            for _ in range(PIECES):
                if gone is not None and gone.is_set():
                    self.saw_gone.set()
                    return
                self.pieces += 1
                time.sleep(PIECE_S)
                yield "word "
        return words()


@pytest.fixture
def app_and_gen(tmp_path: Path) -> Iterator[tuple[Any, SlowGenerator]]:
    settings = Settings(data_dir=tmp_path / "data", screen="off")
    gen = SlowGenerator()
    services = Services(settings, embedder=FakeEmbedder(), generator=gen)
    app = create_app(settings, services)
    with TestClient(app, base_url=LOCAL_URL):  # runs the start-up
        yield app, gen


def _leave_after(app: Any, body: dict[str, Any], seconds: float) -> list[dict[str, Any]]:
    """POST `body` to the chat endpoint as a raw ASGI call whose client disconnects after
    `seconds`; returns what the app sent."""
    payload = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(payload)).encode())]}
    sent: list[dict[str, Any]] = []
    state = {"body_sent": False}
    leaves = time.monotonic() + seconds

    async def receive() -> dict[str, Any]:
        if not state["body_sent"]:
            state["body_sent"] = True
            return {"type": "http.request", "body": payload, "more_body": False}
        if time.monotonic() < leaves:  # as a server does: from then on, at once
            await asyncio.sleep(leaves - time.monotonic())
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        await asyncio.wait_for(app(scope, receive, send), timeout=PIECES * PIECE_S + 30)

    asyncio.run(run())
    return sent


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_stops_its_generation(app_and_gen: tuple[Any, SlowGenerator],
                                                   stream: bool) -> None:
    app, gen = app_and_gen
    body = {"model": "smollm2-135m-instruct", "stream": stream,
            "messages": [{"role": "user", "content": "Tell me a long story."}]}
    started = time.perf_counter()
    _leave_after(app, body, seconds=0.5)
    took = time.perf_counter() - started
    assert gen.gone is not None, "the route did not run the generation under client_gone"
    assert gen.gone.wait(5), "the client left and its generation was never told"
    assert gen.pieces < PIECES / 2, f"it kept generating after the client left ({gen.pieces})"
    assert took < PIECES * PIECE_S / 2
    if not stream:  # the route's own thread was still consuming: the generator saw it stop
        assert gen.saw_gone.wait(5)


def test_a_client_that_stays_gets_the_whole_answer(app_and_gen: tuple[Any, SlowGenerator]) -> None:
    app, gen = app_and_gen
    body = {"model": "smollm2-135m-instruct", "max_tokens": 4096,
            "messages": [{"role": "user", "content": "Tell me a long story."}]}
    sent = _leave_after(app, body, seconds=60)  # the reply comes long before
    reply = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] ==
                                "http.response.body"))
    assert sent[0]["status"] == 200
    assert reply["choices"][0]["message"]["content"].count("word") == PIECES
    assert not gen.saw_gone.is_set()
    assert gen.gone is not None and not gen.gone.is_set()


class BusyGenerator(SlowGenerator):
    def stream(self, messages: Messages, sampling: SamplingConfig,
               adapter: str | None = None) -> Iterator[str]:
        raise ServerBusy(waiting=32, retry_after_s=7)


def test_a_full_queue_is_503_with_retry_after(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", screen="off")
    services = Services(settings, embedder=FakeEmbedder(), generator=BusyGenerator())
    with TestClient(create_app(settings, services), base_url=LOCAL_URL) as client:
        for stream in (False, True):
            reply = client.post("/v1/chat/completions", json={
                "model": "smollm2-135m-instruct", "stream": stream,
                "messages": [{"role": "user", "content": "Hello?"}]})
            assert reply.status_code == 503
            assert reply.headers["retry-after"] == "7"
            assert reply.json()["error"] == "busy" and reply.json()["retry_after_s"] == 7
            assert "RAGTUNE_GENERATION_QUEUE" in reply.json()["detail"]
