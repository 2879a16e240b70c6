"""Wiring for ingest and search alone: the data dir's collections and the embedder, from Settings.

The CLI's collections, ingest and search commands and the retrieval evaluation open only this (no
generator, no job tables, no tuning runner); the server's `Services` is a `Corpus` with the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingest.archive import ArchiveLimits
from ingest.pipeline import FileLimits, FileResult, IngestReport, ingest_paths
from retrieval.catalog import Catalog
from retrieval.collection import Collection, CollectionConfig
from retrieval.embedder import Embedder, SentenceTransformerEmbedder
from retrieval.errors import InvalidSearch
from retrieval.rerank import CrossEncoderReranker, Reranker, RerankStage
from retrieval.search import search
from retrieval.types import Hit, SearchFilter

from .settings import Settings


class Corpus:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(settings.data_dir, use_gpu=settings.faiss_gpu)
        self._embedder = embedder
        self.given_embedder = embedder
        """The embedder passed in (tests), if any: else one is loaded from Settings."""
        self._embedder_lock = threading.Lock()
        self._reranker: Reranker | None = None

    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use."""
        with self._embedder_lock:
            if self._embedder is None:
                s = self.settings
                self._embedder = SentenceTransformerEmbedder(
                    s.embedder, device=s.torch_device, batch_size=s.embed_batch_size,
                    backend=s.embed_backend, cache_dir=s.data_dir / "embedders")
            return self._embedder

    @property
    def archive_limits(self) -> ArchiveLimits:
        return ArchiveLimits(max_entries=self.settings.zip_max_entries,
                             max_total_bytes=int(self.settings.zip_max_mb * 1024 * 1024))

    @property
    def file_limits(self) -> FileLimits:
        return FileLimits(max_seconds=self.settings.max_file_seconds,
                          max_chunks=self.settings.max_file_chunks)

    def create_collection(self, name: str, chunk_size: int | None = None,
                          chunk_overlap: int | None = None, index: str | None = None) -> Collection:
        """A new collection for this embedder's vectors; what is not given comes from Settings."""
        emb = self.embedder
        size = chunk_size if chunk_size is not None else self.settings.chunk_size
        overlap = chunk_overlap if chunk_overlap is not None else min(
            self.settings.chunk_overlap, size // 4)
        return self.catalog.create(CollectionConfig(name=name, embedder=emb.name, dim=emb.dim,
                                                    chunk_size=size, chunk_overlap=overlap,
                                                    index_type=index or self.settings.index))

    def collection(self, name: str) -> Collection:
        self.catalog.get(name)  # a missing collection is reported before the embedder loads
        return self.catalog.open(name, self.embedder)

    def ingest_paths(self, name: str, paths: list[Path], metadata: dict[str, Any] | None = None,
                     on_result: Callable[[FileResult], None] | None = None) -> IngestReport:
        return ingest_paths(self.collection(name), self.embedder, paths, metadata,
                            archive_limits=self.archive_limits, file_limits=self.file_limits,
                            on_result=on_result)

    def reranker(self) -> Reranker:
        """RAGTUNE_RERANKER (its weights load at the first rerank); InvalidSearch when none is set."""
        with self._embedder_lock:
            if self._reranker is None:
                path = self.settings.reranker_dir()
                if path is None:
                    raise InvalidSearch("reranking needs a reranker: set RAGTUNE_RERANKER to a name "
                                     "under <data_dir>/rerankers or a cross-encoder directory")
                self._reranker = CrossEncoderReranker(path, device=self.settings.torch_device
                                                      or "cpu")
            return self._reranker

    def rerank_stage(self, rerank: bool | None = None) -> RerankStage | None:
        """The rerank stage a search runs: `rerank` as a request gives it (None: RAGTUNE_RERANK)."""
        if not (self.settings.rerank if rerank is None else rerank):
            return None
        reranker = self.reranker()
        weight = reranker.weight() if isinstance(reranker, CrossEncoderReranker) else 1.0
        return RerankStage(reranker, top_n=self.settings.rerank_top_n, weight=weight)

    def search(self, name: str, query: str, k: int, flt: SearchFilter | None = None,
               mode: str | None = None, rerank: bool | None = None) -> list[Hit]:
        return search(self.collection(name), self.embedder, query, k, flt,
                      mode or self.settings.search_mode, self.rerank_stage(rerank))

    def close(self) -> None:
        self.catalog.close()
