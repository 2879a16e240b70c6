"""The ingest pipeline: loaded documents → chunks → embeddings → committed to a collection.

Chunks of many documents are embedded together (the embedder is fastest on full batches), then the
batch's documents are committed in one docstore transaction. Identical content already stored is
skipped before embedding. Time is measured per stage so benchmarks can say where it goes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.collection import Collection
from retrieval.embedder import Embedder
from retrieval.types import ChunkRecord, DocumentRecord

from .chunking import Chunker, ChunkingConfig
from .loaders import ArchiveLimits, iter_documents
from .types import FileFailure, LoadedDocument

STAGES = ("parse", "chunk", "embed", "commit", "index_save")


def document_id(content: bytes) -> str:
    """Content-addressed id: identical bytes give the same document."""
    return hashlib.sha256(content).hexdigest()[:32]


@dataclass(frozen=True)
class FileResult:
    source: str
    status: str
    """added | replaced | unchanged | failed"""
    doc_id: str | None = None
    chunks: int = 0
    error: str | None = None
    warnings: tuple[str, ...] = ()


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


class IngestPipeline:
    def __init__(self, collection: Collection, embedder: Embedder, chunker: Chunker,
                 batch_chunks: int = 256, extra_metadata: dict[str, Any] | None = None) -> None:
        if batch_chunks < 1:
            raise ValueError(f"batch_chunks {batch_chunks!r} must be >= 1")
        self.collection = collection
        self.embedder = embedder
        self.chunker = chunker
        self.batch_chunks = batch_chunks
        self.extra_metadata = extra_metadata or {}

    @classmethod
    def for_collection(cls, collection: Collection, embedder: Embedder,
                       extra_metadata: dict[str, Any] | None = None) -> IngestPipeline:
        """A pipeline that chunks by `collection`'s own chunk settings, counted in `embedder`'s
        tokens."""
        config = ChunkingConfig(collection.config.chunk_size, collection.config.chunk_overlap)
        return cls(collection, embedder, Chunker(config, embedder.count_tokens),
                   extra_metadata=extra_metadata)

    def run(self, items: Iterable[LoadedDocument | FileFailure],
            on_result: Callable[[FileResult], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> IngestReport:
        report = IngestReport()
        start = time.perf_counter()
        pending: list[_Pending] = []

        def emit(result: FileResult) -> None:
            report.results.append(result)
            if on_result is not None:
                on_result(result)

        for item in _timed(items, report.stage_seconds):
            if should_stop is not None and should_stop():
                report.cancelled = True
                break
            if isinstance(item, FileFailure):
                emit(FileResult(item.source, "failed", error=item.reason))
                continue
            ready = self._prepare(item, report.stage_seconds, emit)
            if ready is not None:
                pending.append(ready)
            if sum(len(p.chunks) for p in pending) >= self.batch_chunks:
                self._commit(pending, report.stage_seconds, emit)
                pending = []
        if pending:
            self._commit(pending, report.stage_seconds, emit)
        t = time.perf_counter()
        self.collection.flush()
        report.stage_seconds["index_save"] += time.perf_counter() - t
        report.seconds = time.perf_counter() - start
        return report

    def _prepare(self, item: LoadedDocument, stages: dict[str, float],
                 emit: Callable[[FileResult], None]) -> _Pending | None:
        doc_id = document_id(item.content)
        warnings = tuple(item.warnings)
        if self.collection.has_document(doc_id):
            emit(FileResult(item.source, "unchanged", doc_id=doc_id, warnings=warnings))
            return None
        t = time.perf_counter()
        chunks = self.chunker.chunk(item)
        stages["chunk"] += time.perf_counter() - t
        if not chunks:
            emit(FileResult(item.source, "failed", doc_id=doc_id, error="no text to index",
                            warnings=warnings))
            return None
        record = DocumentRecord(doc_id=doc_id, source=item.source, format=item.format,
                                size_bytes=len(item.content),
                                metadata={**item.metadata, **self.extra_metadata},
                                warnings=list(warnings))
        return _Pending(record, chunks, warnings)

    def _commit(self, pending: list[_Pending], stages: dict[str, float],
                emit: Callable[[FileResult], None]) -> None:
        t = time.perf_counter()
        vectors = self.embedder.embed_batch([c.text for p in pending for c in p.chunks])
        stages["embed"] += time.perf_counter() - t
        t = time.perf_counter()
        bounds = np.cumsum([0] + [len(p.chunks) for p in pending])
        items = [(p.doc, p.chunks, vectors[bounds[i]:bounds[i + 1]])
                 for i, p in enumerate(pending)]
        outcomes = self.collection.commit(items)
        self.collection.flush_if_stale()
        stages["commit"] += time.perf_counter() - t
        for p, out in zip(pending, outcomes, strict=True):
            emit(FileResult(p.doc.source, out.status, doc_id=out.doc_id, chunks=out.chunks_added,
                            warnings=p.warnings))


def ingest_paths(collection: Collection, embedder: Embedder, paths: list[Path],
                 metadata: dict[str, Any] | None = None, *,
                 archive_limits: ArchiveLimits | None = None,
                 on_result: Callable[[FileResult], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> IngestReport:
    """The ingest recipe: every file under `paths` (folders walked, archives opened within
    `archive_limits`) chunked by the collection's own chunk settings, embedded with `embedder`
    and committed to `collection`, which is searchable by keyword too once this returns.
    `metadata` is added to every document's own."""
    items = iter_documents(paths, archive_limits=archive_limits or ArchiveLimits())
    report = IngestPipeline.for_collection(collection, embedder, metadata).run(
        items, on_result=on_result, should_stop=should_stop)
    collection.settle_keyword_index()
    return report


def _timed(items: Iterable[Any], stages: dict[str, float]) -> Iterator[Any]:
    """Yield from `items`, adding the time spent producing each item to the parse stage."""
    it = iter(items)
    while True:
        t = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        finally:
            stages["parse"] += time.perf_counter() - t
        yield item
