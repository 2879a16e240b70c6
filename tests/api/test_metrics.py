"""/metrics (api/metrics.py): request latency by route template, ingest chunks and queue, tuning job
states, generation speed and time to first token, the active adapter; read scope once keys exist."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from api.app import create_app
from api.keys import KeyStore
from api.metrics import ChunkTally, GenerationQueue, StateCollector
from api.services import Services
from api.settings import Settings
from generation.generator import GenerationStats, Messages, SamplingConfig, StatsListener
from ingest.jobs import Job, JobStore
from tests.fakes import FakeEmbedder
from tests.generation.fakes import ScriptedGenerator
from tests.helpers import LOCAL_URL
from tuning.jobs import JobSpec
from tuning.jobs import JobStore as TuningJobs

SEARCH = "/v1/collections/{name}/search"


class TimedGenerator(ScriptedGenerator):
    """The scripted generator, reporting made-up timings to its observers when a stream ends."""

    def __init__(self) -> None:
        super().__init__(lambda messages: "one two three four")
        self.listeners: list[StatsListener] = []

    def observe(self, listener: StatsListener) -> None:
        self.listeners.append(listener)

    def stream(self, messages: Messages, sampling: SamplingConfig,
               adapter: str | None = None) -> Iterator[str]:
        pieces = super().stream(messages, sampling, adapter)

        def timed() -> Iterator[str]:
            n = 0
            for piece in pieces:
                n += 1
                yield piece
            stats = GenerationStats(prompt_tokens=12, new_tokens=n, time_to_first_token_s=0.3,
                                    prefill_tok_s=40.0, decode_tok_s=25.0, queued_s=0.0,
                                    total_s=0.42)
            for listener in self.listeners:
                listener(stats)

        return timed()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", chunk_size=64, chunk_overlap=8,
                    generator="scripted", rate_limit_per_minute=0)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    services = Services(settings, embedder=FakeEmbedder(), generator=TimedGenerator())
    with TestClient(create_app(settings, services), base_url=LOCAL_URL) as c:
        yield c


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text page (None when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def scrape(client: TestClient) -> str:
    reply = client.get("/metrics")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return reply.text


def _wait(client: TestClient, job_id: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/ingest-jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return dict(job)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_requests_are_counted_by_route_template_and_status_class(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
    for query in ("pumps", "valves"):
        assert client.post("/v1/collections/kb/search", json={"query": query}).status_code == 200
    assert client.post("/v1/collections/nope/search", json={"query": "x"}).status_code == 404
    assert client.get("/no/such/path").status_code == 404
    text = scrape(client)
    count = "ragtune_http_request_duration_seconds_count"
    assert sample(text, count, method="POST", route=SEARCH, status="2xx") == 2
    assert sample(text, count, method="POST", route=SEARCH, status="4xx") == 1
    assert sample(text, count, method="POST", route="/v1/collections", status="2xx") == 1
    assert sample(text, count, route="unmatched", status="4xx") == 1
    assert "/v1/collections/kb/search" not in text and "/no/such/path" not in text  # no raw paths
    assert sample(text, "ragtune_http_request_duration_seconds_bucket", route=SEARCH,
                  status="2xx", le="+Inf") == 2
    # the scrape before this one is counted too
    assert sample(scrape(client), count, method="GET", route="/metrics", status="2xx") == 1


def test_an_ingest_job_moves_the_chunk_counter(client: TestClient) -> None:
    text = scrape(client)
    assert sample(text, "ragtune_ingest_chunks_total") == 0
    assert sample(text, "ragtune_ingest_jobs", state="queued") == 0
    assert sample(text, "ragtune_ingest_jobs", state="running") == 0
    client.post("/v1/collections", json={"name": "kb"})
    body = " ".join(f"Pump {i} moves water uphill at night." for i in range(60)).encode()
    reply = client.post("/v1/collections/kb/documents", files=[("files", ("pumps.txt", body))])
    assert reply.status_code in (200, 202), reply.text
    job = _wait(client, reply.json()["job_id"])
    assert job["state"] == "succeeded" and isinstance(job["chunks_added"], int)
    assert job["chunks_added"] > 1
    text = scrape(client)
    assert sample(text, "ragtune_ingest_chunks_total") == job["chunks_added"]
    assert sample(scrape(client), "ragtune_ingest_chunks_total") == job["chunks_added"]  # once


def test_the_chunk_tally_counts_growth_since_start_only(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    old = Job(id="old", collection="kb", state="succeeded", files=[], chunks_added=50,
              created_at="2026-01-01T00:00:00")
    store.insert(old)
    tally = ChunkTally(store, window=10)
    tally.start()
    assert tally.read() == 0  # before this process: not counted
    job = Job(id="new", collection="kb", state="running", files=[], chunks_added=7,
              created_at="2026-01-02T00:00:00")
    store.insert(job)
    assert tally.read() == 7
    job.chunks_added, job.state = 20, "succeeded"
    store.update(job)
    assert tally.read() == 20 and tally.read() == 20
    job.chunks_added, job.state = 0, "running"  # resumed after a restart: starts from 0
    store.update(job)
    assert tally.read() == 20
    job.chunks_added = 5
    store.update(job)
    assert tally.read() == 25


def test_tuning_jobs_by_state_and_the_active_adapter(client: TestClient) -> None:
    text = scrape(client)
    for state in ("queued", "running", "succeeded", "failed", "cancelled", "interrupted"):
        assert sample(text, "ragtune_tuning_jobs", state=state) == 0
    assert sample(text, "ragtune_active_adapter_info", adapter="base") == 1


class Serving:
    def __init__(self, name: str | None) -> None:
        self.name = name

    def active(self) -> str | None:
        return self.name


def test_the_state_collector_reads_the_stores_when_scraped(tmp_path: Path) -> None:
    ingest, tuning = JobStore(tmp_path / "ingest.sqlite"), TuningJobs(tmp_path / "tuning.sqlite")
    adapters = Serving("tone")
    registry = CollectorRegistry()
    chunks = ChunkTally(ingest)
    chunks.start()
    registry.register(StateCollector(ingest, chunks, tuning, adapters))  # type: ignore[arg-type]
    ingest.insert(Job(id="a", collection="kb", state="queued", files=["x.txt"], created_at="1"))
    ingest.insert(Job(id="b", collection="kb2", state="running", files=[], chunks_added=9,
                      created_at="2"))
    first = tuning.create(JobSpec(name="tone", dataset_id="ds"))
    tuning.create(JobSpec(name="tone-2", dataset_id="ds"))
    tuning.cancel(first.id)
    text = generate_latest(registry).decode()
    assert sample(text, "ragtune_ingest_jobs", state="queued") == 1
    assert sample(text, "ragtune_ingest_jobs", state="running") == 1
    assert sample(text, "ragtune_ingest_chunks_total") == 9
    assert sample(text, "ragtune_tuning_jobs", state="queued") == 1
    assert sample(text, "ragtune_tuning_jobs", state="cancelled") == 1
    assert sample(text, "ragtune_tuning_jobs", state="running") == 0
    assert sample(text, "ragtune_active_adapter_info", adapter="tone") == 1
    adapters.name = None
    assert sample(generate_latest(registry).decode(), "ragtune_active_adapter_info",
                  adapter="base") == 1


def test_a_scrape_counts_tuning_jobs_without_reading_them(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ingest, tuning = JobStore(tmp_path / "ingest.sqlite"), TuningJobs(tmp_path / "tuning.sqlite")
    for name in ("a", "b", "c"):
        tuning.create(JobSpec(name=name, dataset_id="ds"))

    def no_listing(limit: int = 100) -> None:
        raise AssertionError("a scrape listed the tuning jobs to count them")

    monkeypatch.setattr(tuning, "list", no_listing)
    registry = CollectorRegistry()
    registry.register(StateCollector(ingest, ChunkTally(ingest), tuning,  # type: ignore[arg-type]
                                     Serving(None)))
    text = generate_latest(registry).decode()
    assert sample(text, "ragtune_tuning_jobs", state="queued") == 3
    assert sample(text, "ragtune_tuning_jobs", state="failed") == 0


def test_generations_report_tokens_and_time_to_first_token(client: TestClient) -> None:
    chat = {"model": "scripted", "messages": [{"role": "user", "content": "count"}]}
    assert client.post("/v1/chat/completions", json=chat).status_code == 200
    streamed = client.post("/v1/chat/completions", json={**chat, "stream": True})
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    text = scrape(client)
    assert sample(text, "ragtune_generation_tokens_total") == 8
    assert sample(text, "ragtune_generation_time_to_first_token_seconds_count") == 2
    assert sample(text, "ragtune_generation_time_to_first_token_seconds_sum") == pytest.approx(0.6)
    assert sample(text, "ragtune_generation_tokens_per_second_bucket", le="50.0") == 2
    assert sample(text, "ragtune_generation_tokens_per_second_bucket", le="20.0") == 0
    assert sample(text, "ragtune_generation_queue_seconds_count") == 2
    assert sample(text, "ragtune_generation_requests", state="waiting") == 0
    assert sample(text, "ragtune_generation_requests", state="running") == 0


def test_metrics_need_a_read_key_once_keys_exist(client: TestClient, settings: Settings) -> None:
    assert client.get("/metrics").status_code == 200  # open on loopback without keys
    store = KeyStore.in_data_dir(settings.data_dir)
    _, reader = store.create("scraper", "read", ["kb"])
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {reader}"}).status_code == 200
    text = scrape_with(client, reader)
    assert sample(text, "ragtune_http_request_duration_seconds_count", method="GET",
                  route="/metrics", status="4xx") == 1  # the refusal, under its route


def scrape_with(client: TestClient, key: str) -> str:
    reply = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200
    return reply.text


def test_metrics_stay_out_of_the_openapi_schema(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_the_generation_queue_is_read_at_each_scrape() -> None:
    state = [(3, 5)]
    registry = CollectorRegistry()
    registry.register(GenerationQueue(lambda: state[0]))
    text = generate_latest(registry).decode()
    assert sample(text, "ragtune_generation_requests", state="waiting") == 3
    assert sample(text, "ragtune_generation_requests", state="running") == 5
    state[0] = (0, 1)
    text = generate_latest(registry).decode()
    assert sample(text, "ragtune_generation_requests", state="waiting") == 0
    assert sample(text, "ragtune_generation_requests", state="running") == 1
