"""Ingest on a Ray cluster: files read, chunked and embedded by a pool of actors, committed here.

The process that calls `ingest_on_cluster` stays the collection's single writer. It walks the files
as the local path does (`iter_files`), reads their bytes and sends them, a few hundred kilobytes per
call, to `workers` embedder actors (one per GPU, or per `cpus_per_worker` CPUs). Each actor runs
the very pipeline the local ingest runs (`IngestPipeline`: parse, chunk by the collection's
settings, embed in full batches) against a staging stand-in for the collection, and returns each
document whole with its chunks and vectors. The writer commits the calls' documents in the order
of the files, each in one docstore transaction as today, so a cluster ingest gives the same chunk
ids as a local one.

Nothing in an actor writes anything, so a call is safe to run twice: a worker (or node) killed
mid-call is restarted by Ray and its calls retried (`max_restarts`, `max_task_retries`), which
costs the retry and never a half document or a duplicate. A call that still fails after its
retries fails its files, each reported like a local file's error.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ingest.archive import ArchiveLimits
from ingest.chunking import Chunker, ChunkingConfig
from ingest.loaders import iter_bytes, iter_files
from ingest.pipeline import (
    PROGRESS_EVERY_S,
    FileLimits,
    FileProgress,
    FileResult,
    IngestPipeline,
    IngestReport,
    document_id,
)
from ingest.types import FileFailure
from retrieval.collection import Collection
from retrieval.embedder import Embedder
from retrieval.types import ChunkRecord, CommitOutcome, DocumentRecord

from .errors import ClusterError

CALL_BYTES = 256 * 1024  # file bytes sent in one actor call: enough chunks for full batches
IN_FLIGHT_PER_WORKER = 2  # calls queued per actor, so it never waits for the writer
RETRIES = 4  # restarts of a dead actor, and retries of each of its calls
ONE_DOCUMENT = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")  # content == the file's bytes

Staged = tuple[DocumentRecord, list[ChunkRecord], np.ndarray]
Unit = tuple[str, bytes]  # (source, the file's bytes)


@dataclass(frozen=True)
class ClusterIngestConfig:
    """How the work is spread over the cluster."""

    workers: int = 2
    """Embedder actors: one per GPU, or one per `cpus_per_worker` CPUs."""
    cpus_per_worker: float = 1.0
    """CPUs each actor holds (torch uses as many threads)."""
    gpus_per_worker: float = 0.0
    """GPUs each actor holds: 1 puts one actor on each GPU."""
    call_bytes: int = CALL_BYTES
    """File bytes sent in one call."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers {self.workers!r} must be >= 1")
        if not self.cpus_per_worker > 0 or self.gpus_per_worker < 0:
            raise ValueError(f"cpus_per_worker {self.cpus_per_worker!r} must be > 0 and "
                             f"gpus_per_worker {self.gpus_per_worker!r} >= 0")
        if self.call_bytes < 1:
            raise ValueError(f"call_bytes {self.call_bytes!r} must be >= 1")


@dataclass
class CallResult:
    """What one actor call gives back: documents in file order, failures, stage seconds."""

    staged: list[Staged] = field(default_factory=list)
    warnings: dict[str, tuple[str, ...]] = field(default_factory=dict)
    failures: list[FileResult] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)


class _Staging:
    """Stands in for the collection inside an actor: keeps what the pipeline would commit (the
    writer commits it); knows no documents, so the writer's docstore decides `unchanged`."""

    def __init__(self) -> None:
        self.staged: list[Staged] = []

    def has_document(self, doc_id: str) -> bool:
        return False

    def commit(self, items: list[Staged]) -> list[CommitOutcome]:
        self.staged.extend(items)
        return [CommitOutcome(status="added", doc_id=doc.doc_id, chunks_added=len(chunks))
                for doc, chunks, _ in items]

    def flush_if_stale(self, max_age_s: float = 30.0) -> None:
        pass

    def flush(self) -> None:
        pass


class EmbedWorker:
    """The actor: loads the embedder once, then prepares calls of files (Ray's remote class is
    made from this one in `_actor_class`, so the module imports without Ray)."""

    def __init__(self, make_embedder: Callable[[], Embedder], chunking: ChunkingConfig,
                 file_limits: FileLimits, archive_limits: ArchiveLimits,
                 metadata: dict[str, Any] | None) -> None:
        self.embedder = make_embedder()
        self.chunker = Chunker(chunking, self.embedder.count_tokens)
        self.file_limits = file_limits
        self.archive_limits = archive_limits
        self.metadata = metadata

    def prepare(self, units: list[Unit]) -> CallResult:
        staging = _Staging()
        pipeline = IngestPipeline(staging, self.embedder, self.chunker,  # type: ignore[arg-type]
                                  extra_metadata=self.metadata, limits=self.file_limits)
        out = CallResult()

        def on_result(result: FileResult) -> None:
            if result.status == "failed":
                out.failures.append(result)
            else:
                out.warnings[result.source] = result.warnings

        docs = (item for source, data in units
                for item in iter_bytes(source, data, archive_limits=self.archive_limits))
        report = pipeline.run(docs, on_result=on_result)
        out.staged, out.stage_seconds = staging.staged, report.stage_seconds
        return out

    def pid(self) -> int:
        import os

        return os.getpid()


def _actor_class(config: ClusterIngestConfig) -> Any:
    import ray

    return ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)(EmbedWorker).options(
        num_cpus=config.cpus_per_worker, num_gpus=config.gpus_per_worker)


def check_fits(config: ClusterIngestConfig) -> None:
    """ClusterError unless the cluster has the CPUs and GPUs the workers ask for: an actor that
    cannot be placed would wait for ever."""
    import ray

    have = ray.cluster_resources()
    for resource, each in (("CPU", config.cpus_per_worker), ("GPU", config.gpus_per_worker)):
        if each and config.workers * each > have.get(resource, 0):
            raise ClusterError(
                f"{config.workers} embedder workers of {each:g} {resource} each do not fit the "
                f"cluster's {have.get(resource, 0):g} {resource}s: lower RAGTUNE_CLUSTER_WORKERS or "
                f"RAGTUNE_CLUSTER_{resource}S_PER_WORKER, or add nodes")


def start_workers(make_embedder: Callable[[], Embedder], collection: Collection,
                  config: ClusterIngestConfig, file_limits: FileLimits | None = None,
                  archive_limits: ArchiveLimits | None = None,
                  metadata: dict[str, Any] | None = None) -> list[Any]:
    """`config.workers` embedder actors for `collection`'s chunk settings (each loads the
    embedder as it starts)."""
    check_fits(config)
    chunking = ChunkingConfig(collection.config.chunk_size, collection.config.chunk_overlap)
    actor = _actor_class(config)
    return [actor.remote(make_embedder, chunking, file_limits or FileLimits(),
                         archive_limits or ArchiveLimits(), metadata)
            for _ in range(config.workers)]


def ingest_on_cluster(collection: Collection, make_embedder: Callable[[], Embedder],
                      paths: list[Path], metadata: dict[str, Any] | None = None, *,
                      config: ClusterIngestConfig | None = None,
                      archive_limits: ArchiveLimits | None = None,
                      file_limits: FileLimits | None = None,
                      on_result: Callable[[FileResult], None] | None = None,
                      should_stop: Callable[[], bool] | None = None,
                      on_progress: Callable[[FileProgress], None] | None = None,
                      workers: list[Any] | None = None) -> IngestReport:
    """The ingest recipe of `ingest.pipeline.ingest_paths`, its work done by actors on the Ray
    cluster this process has joined (`cluster.connect`); same arguments, same report (its
    parse, chunk and embed seconds are the actors' summed). `workers`: actors from
    `start_workers` to use (and leave running); by default they are started and ended here."""
    import ray

    config = config or ClusterIngestConfig()
    own = workers is None
    actors = workers if workers is not None else start_workers(
        make_embedder, collection, config, file_limits, archive_limits, metadata)
    writer = _Writer(collection, on_result, on_progress)
    start = time.perf_counter()
    try:
        calls: deque[tuple[Any, list[Unit]]] = deque()
        for n, units in enumerate(_calls(iter_files(paths), collection, writer, config.call_bytes)):
            if should_stop is not None and should_stop():
                writer.report.cancelled = True
                break
            calls.append((actors[n % len(actors)].prepare.remote(units), units))
            while len(calls) >= IN_FLIGHT_PER_WORKER * len(actors):
                writer.take(*calls.popleft())
        while calls:
            writer.take(*calls.popleft())
    finally:
        if own:
            for actor in actors:
                ray.kill(actor)
    t = time.perf_counter()
    collection.flush()
    writer.report.stage_seconds["index_save"] += time.perf_counter() - t
    collection.settle_keyword_index()
    writer.report.seconds = time.perf_counter() - start
    return writer.report


class _Writer:
    """The single writer's side: commits each call's documents, reports every file once."""

    def __init__(self, collection: Collection, on_result: Callable[[FileResult], None] | None,
                 on_progress: Callable[[FileProgress], None] | None) -> None:
        self.collection = collection
        self.report = IngestReport()
        self.on_result = on_result
        self.on_progress = on_progress
        self.last_tick = -math.inf

    def emit(self, result: FileResult) -> None:
        self.report.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def take(self, ref: Any, units: list[Unit]) -> None:
        """Wait for call `ref` (of `units`) and commit what it prepared."""
        import ray

        try:
            got: CallResult = ray.get(ref)
        except (ray.exceptions.RayError, OSError) as exc:
            reason = f"the cluster could not prepare it after {RETRIES} retries ({type(exc).__name__})"
            for source, _ in units:
                self.emit(FileResult(source, "failed", error=reason))
            return
        for stage, seconds in got.stage_seconds.items():
            if stage in ("parse", "chunk", "embed"):
                self.report.stage_seconds[stage] += seconds
        for failure in got.failures:
            self.emit(failure)
        if got.staged:
            self._commit(got)

    def _commit(self, got: CallResult) -> None:
        t = time.perf_counter()
        outcomes = self.collection.commit(got.staged)
        self.collection.flush_if_stale()
        self.report.stage_seconds["commit"] += time.perf_counter() - t
        for (doc, chunks, _), out in zip(got.staged, outcomes, strict=True):
            self.emit(FileResult(doc.source, out.status, doc_id=out.doc_id,
                                 chunks=out.chunks_added, warnings=got.warnings.get(doc.source, ())))
            self._tick(doc, len(chunks))

    def _tick(self, doc: DocumentRecord, chunks: int) -> None:
        now = time.monotonic()
        if self.on_progress is not None and now - self.last_tick >= PROGRESS_EVERY_S:
            self.last_tick = now
            self.on_progress(FileProgress(doc.source, chunks, chunks, doc.pages, doc.pages))


def _calls(files: Iterable[tuple[Path, str] | FileFailure], collection: Collection,
           writer: _Writer, call_bytes: int) -> Iterator[list[Unit]]:
    """The files' bytes in groups of about `call_bytes`, in order. Failures and single-document
    files already stored (the same bytes) are reported here and sent nowhere."""
    group: list[Unit] = []
    size = 0
    for item in files:
        if isinstance(item, FileFailure):
            writer.emit(FileResult(item.source, "failed", error=item.reason))
            continue
        path, source = item
        try:
            data = path.read_bytes()
        except OSError as exc:
            writer.emit(FileResult(source, "failed",
                                   error=f"cannot read file ({exc.strerror or exc})"))
            continue
        if source.lower().endswith(ONE_DOCUMENT) and collection.has_document(document_id(data)):
            writer.emit(FileResult(source, "unchanged", doc_id=document_id(data)))
            continue
        group.append((source, data))
        size += len(data)
        if size >= call_bytes:
            yield group
            group, size = [], 0
    if group:
        yield group
