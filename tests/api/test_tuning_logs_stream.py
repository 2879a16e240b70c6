"""GET /v1/tuning/jobs/{id}/logs against a live server: a follower that leaves is noticed at once,
even while the job never changes (nothing to write), so no server work outlives it and shutdown
does not wait for it; the stream sends a comment while quiet and ends when the job finishes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.routers import tuning as tuning_router
from api.services import Services
from api.settings import Settings
from tests.fakes import FakeEmbedder
from tests.helpers import serving
from tuning.jobs import JobSpec, TuningJob


class Live:
    def __init__(self, url: str, services: Services, polls: list[float]) -> None:
        self.url, self.services, self.polls = url, services, polls


@contextmanager
def _live(tmp_path: Path) -> Iterator[Live]:
    """A live server whose tuning jobs stay queued (no runner), counting the job polls."""
    settings = Settings(data_dir=tmp_path / "data", rate_limit_per_minute=0)
    services = Services(settings, embedder=FakeEmbedder())
    services.start_tuning_runner = lambda: None  # type: ignore[method-assign]
    store, polls = services.tuning.store, []
    get = store.get

    def counted(job_id: str) -> TuningJob:
        polls.append(time.monotonic())
        return get(job_id)

    store.get = counted  # type: ignore[method-assign]
    with serving(create_app(settings, services)) as url:
        yield Live(url, services, polls)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with _live(tmp_path) as server:
        yield server


def _queued(live: Live) -> str:
    return live.services.tuning.store.create(JobSpec(name="idle", dataset_id="d", model="m")).id


def _first_event(stream: httpx.Response) -> str:
    for line in stream.iter_lines():
        if line.startswith("event: "):
            return line
    raise AssertionError("the stream ended before its first event")


def test_a_follower_that_leaves_stops_the_servers_polling(live: Live) -> None:
    job_id = _queued(live)
    client = httpx.Client(base_url=live.url, timeout=10)
    with client.stream("GET", f"/v1/tuning/jobs/{job_id}/logs") as stream:
        assert _first_event(stream) == "event: progress"
        time.sleep(3 * tuning_router.LOG_POLL_S)
        assert live.polls, "the stream polls the job while following it"
    client.close()
    left = time.monotonic()
    time.sleep(3.0)
    late = [t for t in live.polls if t > left + 1.0]
    assert late == [], f"the server still polled the job {len(late)} times after the client left"


def test_shutdown_does_not_wait_for_a_follower_that_left(tmp_path: Path) -> None:
    with _live(tmp_path) as live:
        job_id = _queued(live)
        with httpx.Client(base_url=live.url, timeout=10) as client, \
                client.stream("GET", f"/v1/tuning/jobs/{job_id}/logs") as stream:
            assert _first_event(stream) == "event: progress"
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5.0, "shutdown waited for a stream nobody reads"


def test_a_quiet_stream_sends_comments_and_ends_with_the_job(live: Live,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning_router, "HEARTBEAT_S", 0.6)
    job_id = _queued(live)
    seen: list[str] = []

    def cancel_later() -> None:
        time.sleep(1.5)
        live.services.tuning.store.cancel(job_id)

    threading.Thread(target=cancel_later, daemon=True).start()
    with httpx.Client(base_url=live.url, timeout=10) as client, \
            client.stream("GET", f"/v1/tuning/jobs/{job_id}/logs") as stream:
        seen = [line for line in stream.iter_lines() if line]
    events = [line for line in seen if line.startswith("event: ")]
    assert events[0] == "event: progress" and events[-1] == "event: end"
    assert any(line.startswith(":") for line in seen), "no comment was sent while quiet"
    assert json.loads(seen[-1].removeprefix("data: "))["state"] == "cancelled"
