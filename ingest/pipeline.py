"""The ingest pipeline: loaded documents → chunks → embeddings → committed to a collection.

Chunks of many documents are embedded together (the embedder is fastest on full batches), then the
batch's documents are committed in one docstore transaction. Identical content already stored is
skipped before embedding. Time is measured per stage so benchmarks can say where it goes.

One file's work is bounded (`FileLimits`: seconds to read and chunk it, chunks it may make): a file
over a bound fails alone, saying which, and nothing of it is indexed. A long file reports how far
it is (`FileProgress`: pages read for a PDF, chunks made, then embedded) about once a second.
"""

from __future__ import annotations

import hashlib
import math
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.collection import Collection
from retrieval.embedder import Embedder
from retrieval.types import ChunkRecord, DocumentRecord

from .chunking import Chunker, ChunkingConfig
from .errors import DocumentLoadError
from .loaders import ArchiveLimits, PageCallback, iter_documents
from .types import FileFailure, LoadedDocument

STAGES = ("parse", "chunk", "embed", "commit", "index_save")
PROGRESS_EVERY_S = 1.0


def document_id(content: bytes) -> str:
    """Content-addressed id: identical bytes give the same document."""
    return hashlib.sha256(content).hexdigest()[:32]


@dataclass(frozen=True)
class FileLimits:
    """Bounds on the work one file may cost. A document over one fails alone, saying which, and
    nothing of it is indexed (documents of a multi-document file, such as JSONL, count one by one).
    Embedding is bounded through the chunks: its time depends on the hardware, not on the file."""

    max_seconds: float = 600.0
    """Most seconds to read a document and chunk it."""
    max_chunks: int = 100_000
    """Most chunks one document may make."""

    def __post_init__(self) -> None:
        for name in ("max_seconds", "max_chunks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 \
                    or not math.isfinite(value):
                raise ValueError(f"FileLimits.{name} must be a positive number, got {value!r}")

    def too_many_chunks(self) -> str:
        return (f"more than {self.max_chunks:,} chunks, the limit per file "
                "(RAGTUNE_MAX_FILE_CHUNKS): not indexed; split the file or raise the limit")

    def too_slow(self, chunks: int) -> str:
        return (f"reading and chunking took over {self.max_seconds:g} s, the limit per file "
                f"(RAGTUNE_MAX_FILE_SECONDS), after {chunks:,} chunks: not indexed")


@dataclass(frozen=True)
class FileProgress:
    """How far the pipeline is in one document."""

    source: str
    chunks: int
    """Chunks made so far: final once its chunking ends."""
    embedded: int
    """Of those, chunks embedded so far."""
    pages_done: int | None = None
    """Pages read so far, for a PDF (None for formats without pages)."""
    pages_total: int | None = None
    """Pages in the file, for a PDF."""


@dataclass(frozen=True)
class FileResult:
    source: str
    status: str
    """added | replaced | unchanged | failed"""
    doc_id: str | None = None
    chunks: int = 0
    error: str | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """As `ragtune ingest --json` and an ingest job's results show it."""
        return {"source": self.source, "status": self.status, "doc_id": self.doc_id,
                "chunks": self.chunks, "error": self.error, "warnings": list(self.warnings)}


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def chunks_added(self) -> int:
        return sum(r.chunks for r in self.results if r.status in ("added", "replaced"))

    @property
    def failures(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def summary(self) -> dict[str, Any]:
        return {
            "documents": len(self.results), "added": self.count("added"),
            "replaced": self.count("replaced"), "unchanged": self.count("unchanged"),
            "failed": self.count("failed"), "chunks_added": self.chunks_added,
            "seconds": round(self.seconds, 3),
            "chunks_per_s": round(self.chunks_added / self.seconds, 1) if self.seconds else 0.0,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }


@dataclass
class _Pending:
    doc: DocumentRecord
    chunks: list[ChunkRecord]
    warnings: tuple[str, ...]


@dataclass
class _Run:
    """One run's report, result sink and progress sink, handed to each step."""

    report: IngestReport
    on_result: Callable[[FileResult], None] | None
    on_progress: Callable[[FileProgress], None] | None
    every_s: float
    last_tick: float = -math.inf

    @property
    def stages(self) -> dict[str, float]:
        return self.report.stage_seconds

    def emit(self, result: FileResult) -> None:
        self.report.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def tick(self, source: str, chunks: int, embedded: int, pages: int | None = None) -> None:
        """Report progress, at most once every `every_s` seconds (`pages`: all of them read)."""
        if self.on_progress is None:
            return
        now = time.monotonic()
        if now - self.last_tick >= self.every_s:
            self.last_tick = now
            self.on_progress(FileProgress(source, chunks, embedded, pages, pages))


class IngestPipeline:
    def __init__(self, collection: Collection, embedder: Embedder, chunker: Chunker,
                 batch_chunks: int = 256, extra_metadata: dict[str, Any] | None = None,
                 limits: FileLimits | None = None,
                 progress_every_s: float = PROGRESS_EVERY_S) -> None:
        if batch_chunks < 1:
            raise ValueError(f"batch_chunks {batch_chunks!r} must be >= 1")
        self.collection = collection
        self.embedder = embedder
        self.chunker = chunker
        self.batch_chunks = batch_chunks
        self.extra_metadata = extra_metadata or {}
        self.limits = limits or FileLimits()
        self.progress_every_s = progress_every_s

    @classmethod
    def for_collection(cls, collection: Collection, embedder: Embedder,
                       extra_metadata: dict[str, Any] | None = None,
                       limits: FileLimits | None = None) -> IngestPipeline:
        """A pipeline that chunks by `collection`'s own chunk settings, counted in `embedder`'s
        tokens."""
        config = ChunkingConfig(collection.config.chunk_size, collection.config.chunk_overlap)
        return cls(collection, embedder, Chunker(config, embedder.count_tokens),
                   extra_metadata=extra_metadata, limits=limits)

    def run(self, items: Iterable[LoadedDocument | FileFailure],
            on_result: Callable[[FileResult], None] | None = None,
            should_stop: Callable[[], bool] | None = None,
            on_progress: Callable[[FileProgress], None] | None = None) -> IngestReport:
        report = IngestReport()
        run = _Run(report, on_result, on_progress, self.progress_every_s)
        start = time.perf_counter()
        pending: list[_Pending] = []
        for item, read_s in _timed(items, report.stage_seconds):
            if should_stop is not None and should_stop():
                report.cancelled = True
                break
            if isinstance(item, FileFailure):
                run.emit(FileResult(item.source, "failed", error=item.reason))
                continue
            ready = self._prepare(item, read_s, run)
            if ready is not None:
                pending.append(ready)
            if sum(len(p.chunks) for p in pending) >= self.batch_chunks:
                self._commit(pending, run)
                pending = []
        if pending:
            self._commit(pending, run)
        t = time.perf_counter()
        self.collection.flush()
        report.stage_seconds["index_save"] += time.perf_counter() - t
        report.seconds = time.perf_counter() - start
        return report

    def _prepare(self, item: LoadedDocument, read_s: float, run: _Run) -> _Pending | None:
        doc_id = document_id(item.content)
        warnings = tuple(item.warnings)
        if self.collection.has_document(doc_id):
            run.emit(FileResult(item.source, "unchanged", doc_id=doc_id, warnings=warnings))
            return None
        t = time.perf_counter()
        chunks, error = self._chunks(item, t - read_s, run)
        run.stages["chunk"] += time.perf_counter() - t
        if error is not None or not chunks:
            run.emit(FileResult(item.source, "failed", doc_id=doc_id,
                                error=error or "no text to index", warnings=warnings))
            return None
        record = DocumentRecord(doc_id=doc_id, source=item.source, format=item.format,
                                size_bytes=len(item.content), pages=item.page_count,
                                metadata={**item.metadata, **self.extra_metadata},
                                warnings=list(warnings))
        return _Pending(record, chunks, warnings)

    def _chunks(self, item: LoadedDocument, started: float,
                run: _Run) -> tuple[list[ChunkRecord], str | None]:
        """`item`'s chunks, or the bound it broke (read and chunked since `started`)."""
        limits = self.limits
        chunks: list[ChunkRecord] = []
        for chunk in self.chunker.iter_chunks(item):
            chunks.append(chunk)
            if len(chunks) > limits.max_chunks:
                return [], limits.too_many_chunks()
            if time.perf_counter() - started > limits.max_seconds:
                return [], limits.too_slow(len(chunks))
            run.tick(item.source, len(chunks), 0, item.page_count)
        if time.perf_counter() - started > limits.max_seconds:  # reading alone took too long
            return [], limits.too_slow(len(chunks))
        return chunks, None

    def _commit(self, pending: list[_Pending], run: _Run) -> None:
        bounds = np.cumsum([0] + [len(p.chunks) for p in pending]).tolist()
        texts = [c.text for p in pending for c in p.chunks]
        parts: list[np.ndarray] = []
        t = time.perf_counter()
        for start in range(0, len(texts), self.batch_chunks):  # a long document shows progress
            end = min(start + self.batch_chunks, len(texts))
            parts.append(self.embedder.embed_batch(texts[start:end]))
            doc = bisect_right(bounds, end - 1) - 1
            run.tick(pending[doc].doc.source, len(pending[doc].chunks), end - bounds[doc],
                     pending[doc].doc.pages)
        vectors = parts[0] if len(parts) == 1 else np.concatenate(parts)
        run.stages["embed"] += time.perf_counter() - t
        t = time.perf_counter()
        items = [(p.doc, p.chunks, vectors[bounds[i]:bounds[i + 1]])
                 for i, p in enumerate(pending)]
        outcomes = self.collection.commit(items)
        self.collection.flush_if_stale()
        run.stages["commit"] += time.perf_counter() - t
        for p, out in zip(pending, outcomes, strict=True):
            run.emit(FileResult(p.doc.source, out.status, doc_id=out.doc_id,
                                chunks=out.chunks_added, warnings=p.warnings))


def ingest_paths(collection: Collection, embedder: Embedder, paths: list[Path],
                 metadata: dict[str, Any] | None = None, *,
                 archive_limits: ArchiveLimits | None = None,
                 file_limits: FileLimits | None = None,
                 on_result: Callable[[FileResult], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_progress: Callable[[FileProgress], None] | None = None) -> IngestReport:
    """The ingest recipe: every file under `paths` (folders walked, archives opened within
    `archive_limits`) chunked by the collection's own chunk settings within `file_limits`,
    embedded with `embedder` and committed to `collection`, which is searchable by keyword too
    once this returns. `metadata` is added to every document's own; `on_result` hears of each
    document when it is done, `on_progress` of a long one about once a second (and of a PDF's
    last page read, always)."""
    limits = file_limits or FileLimits()
    items = iter_documents(paths, archive_limits=archive_limits or ArchiveLimits(),
                           on_page=_page_guard(_page_reporter(on_progress, PROGRESS_EVERY_S),
                                               limits.max_seconds, should_stop))
    pipeline = IngestPipeline.for_collection(collection, embedder, metadata, limits)
    report = pipeline.run(items, on_result=on_result, should_stop=should_stop,
                          on_progress=on_progress)
    collection.settle_keyword_index()
    return report


def _page_reporter(on_progress: Callable[[FileProgress], None] | None,
                   every_s: float) -> PageCallback | None:
    """A PDF reader's page callback that tells `on_progress` at most once every `every_s`
    seconds, and always of the last page, so a reader of the progress sees the file read whole."""
    if on_progress is None:
        return None
    last = -math.inf

    def on_page(source: str, done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done == total or now - last >= every_s:
            last = now
            on_progress(FileProgress(source, 0, 0, done, total))
    return on_page


def _page_guard(report: PageCallback | None, max_seconds: float,
                should_stop: Callable[[], bool] | None) -> PageCallback:
    """A PDF reader's page callback that also stops reading a file once it has taken more than
    `max_seconds` (the time bound, checked between pages rather than after the whole file, so a
    PDF of thousands of slow pages does not hold its worker) or once the job is cancelled."""
    started: dict[str, float] = {}

    def on_page(source: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done <= 1 or source not in started:
            started[source] = now
        if report is not None:
            report(source, done, total)
        if should_stop is not None and should_stop():
            raise DocumentLoadError(source, f"reading stopped after {done} of {total} pages: "
                                            "the job was cancelled")
        if done < total and now - started[source] > max_seconds:
            raise DocumentLoadError(source, (
                f"reading took over {max_seconds:g} s, the limit per file "
                f"(RAGTUNE_MAX_FILE_SECONDS), after {done:,} of {total:,} pages: not indexed"))
    return on_page


def _timed(items: Iterable[Any], stages: dict[str, float]) -> Iterator[tuple[Any, float]]:
    """Yield `(item, seconds it took to produce)` from `items`, adding the time to the parse stage."""
    it = iter(items)
    while True:
        t = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        finally:
            took = time.perf_counter() - t
            stages["parse"] += took
        yield item, took
