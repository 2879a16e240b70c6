"""Prometheus metrics, served at /metrics: what the server does, for dashboards and alerts.

Requests are timed by the request middleware (api/telemetry.py) and labelled by route template
(`/v1/collections/{name}/search`, never the raw path, so a label's values stay few) and status
class; generations report their timings through the serving model's `observe` (generation/ knows
nothing of Prometheus). Job queues, tuning job states, ingest chunk counts and the active adapter
are read from their stores when scraped, so they are right whichever process changed them.

Each app has its own registry: two apps in one process (tests) never share counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from generation.generator import GenerationStats
from ingest.jobs import Job
from ingest.jobs import JobStore as IngestJobs
from tuning.jobs import STATES as TUNING_STATES
from tuning.jobs import JobStore as TuningJobs

if TYPE_CHECKING:
    from generation.adapter_registry import AdapterRegistry

    from .services import Services

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
INGEST_STATES = ("queued", "running")


class Metrics:
    """The registry of one app and the metrics observed as things happen."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.request_seconds = Histogram(
            "ragtune_http_request_duration_seconds",
            "HTTP requests by method, route template and status class, until the last byte sent",
            ["method", "route", "status"], buckets=REQUEST_BUCKETS, registry=self.registry)
        self.tokens = Counter("ragtune_generation_tokens",
                              "tokens generated (rate() gives tokens/s across requests)",
                              registry=self.registry)
        self.tokens_per_s = Histogram(
            "ragtune_generation_tokens_per_second",
            "decode speed of each generation (tokens after the first, per second)",
            buckets=RATE_BUCKETS, registry=self.registry)
        self.ttft = Histogram(
            "ragtune_generation_time_to_first_token_seconds",
            "time from the start of a generation to its first token (prefill; the wait for the "
            "model lock not included)", buckets=TTFT_BUCKETS, registry=self.registry)

        self.queued = Histogram(
            "ragtune_generation_queue_seconds",
            "time a generation waited for a batch slot (RAGTUNE_MAX_BATCH) or the model before "
            "its prefill began", buckets=TTFT_BUCKETS, registry=self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.request_seconds.labels(method if method in METHODS else "OTHER", route,
                                    f"{status // 100}xx").observe(seconds)

    def observe_generation(self, stats: GenerationStats) -> None:
        self.tokens.inc(stats.new_tokens)
        self.queued.observe(stats.queued_s)
        if stats.new_tokens:
            self.ttft.observe(stats.time_to_first_token_s)
        if stats.decode_tok_s > 0:
            self.tokens_per_s.observe(stats.decode_tok_s)

    def watch(self, services: Services) -> None:
        """Start reading the state of `services` at each scrape and observing its generations;
        called once by the server's start-up, before the workers resume their jobs."""
        chunks = ChunkTally(services.ingest_worker.store)
        chunks.start()
        self.registry.register(StateCollector(services.ingest_worker.store, chunks,
                                              services.tuning.store, services.adapters))
        services.serving.observe(self.observe_generation)
        self.registry.register(GenerationQueue(services.serving.queue_state))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST


class ChunkTally:
    """Chunks added by ingest jobs since `start`, counted from the job records at each read: the
    growth of each job's `chunks_added` since the last read. The queued and running jobs and the
    newest `window` are read, so a job is counted in full unless `window` newer ones are created
    between two reads (a scrape every few seconds)."""

    def __init__(self, store: IngestJobs, window: int = 200) -> None:
        self.store = store
        self.window = window
        self.total = 0
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def _jobs(self) -> Iterable[Job]:
        return {j.id: j for j in [*self.store.active(), *self.store.recent(self.window)]}.values()

    def start(self) -> None:
        """What the jobs had already added before this process does not count."""
        with self._lock:
            self._seen = {j.id: j.chunks_added for j in self._jobs()}

    def read(self) -> int:
        with self._lock:
            seen: dict[str, int] = {}
            for job in self._jobs():
                self.total += max(0, job.chunks_added - self._seen.get(job.id, 0))
                seen[job.id] = job.chunks_added  # a resumed job starts again from 0
            self._seen = seen
            return self.total


class GenerationQueue(Collector):
    """Generations waiting for a batch slot and being written, read at scrape time."""

    def __init__(self, read: Callable[[], tuple[int, int]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        waiting, running = self.read()
        gauge = GaugeMetricFamily("ragtune_generation_requests", "generations waiting for a batch "
                                  "slot (RAGTUNE_GENERATION_QUEUE) or being written",
                                  labels=["state"])
        gauge.add_metric(["waiting"], waiting)
        gauge.add_metric(["running"], running)
        yield gauge


class StateCollector(Collector):
    """Metrics read from the stores at scrape time."""

    def __init__(self, ingest: IngestJobs, chunks: ChunkTally, tuning: TuningJobs,
                 adapters: AdapterRegistry) -> None:
        self.ingest = ingest
        self.chunks = chunks
        self.tuning = tuning
        self.adapters = adapters

    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily("ragtune_ingest_jobs", "ingest jobs waiting or running",
                                  labels=["state"])
        waiting = self.ingest.count_by_state()
        for state in INGEST_STATES:
            queue.add_metric([state], waiting.get(state, 0))
        yield queue
        yield CounterMetricFamily("ragtune_ingest_chunks", "chunks added to collections by ingest "
                                  "jobs (rate() gives chunks/s)", value=self.chunks.read())
        tuning = GaugeMetricFamily("ragtune_tuning_jobs", "tuning jobs by state", labels=["state"])
        states = self.tuning.count_by_state()
        for state in TUNING_STATES:
            tuning.add_metric([state], states.get(state, 0))
        yield tuning
        yield InfoMetricFamily("ragtune_active_adapter", "the adapter answering requests that name "
                               "none (base: the base model alone)",
                               value={"adapter": self.adapters.active() or "base"})
