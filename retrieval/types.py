"""Records passed between the store and its callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChunkRecord:
    """A chunk to be stored: its text, its page (1-based, or None) and metadata (e.g. header path)."""

    text: str
    page: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DocumentRecord:
    doc_id: str
    source: str
    format: str
    size_bytes: int
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    n_chunks: int = 0
    created_at: str = ""
    pages: int | None = None
    """Page count of a paged format (PDF); None for formats without pages."""


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    doc_id: str
    source: str
    page: int | None
    text: str
    score: float
    metadata: dict[str, Any]


@dataclass(frozen=True)
class CommitOutcome:
    """What committing one document did: "added", "replaced" (same source, new content) or
    "unchanged" (identical content already stored)."""

    status: str
    doc_id: str
    chunks_added: int
    replaced_doc_id: str | None = None


@dataclass(frozen=True)
class SearchFilter:
    """Restricts a search to chunks whose document matches every given field."""

    source: str | None = None
    doc_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return self.source is None and self.doc_id is None and not self.metadata
