"""Plain data carried between the loaders, the chunker and the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Page:
    """One unit of extracted text; `number` is the 1-based page for paged formats (PDF), else None."""

    text: str
    number: int | None = None


@dataclass
class LoadedDocument:
    """A document read from a file (or one record of a multi-document file such as BEIR JSONL)."""

    source: str
    """Name shown to users and used to detect new versions: a path relative to the ingest root."""
    content: bytes
    """Raw bytes of the document; its SHA-256 is the document id."""
    pages: list[Page]
    format: str
    """One of "pdf", "txt", "md", "html", "jsonl"."""
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """Non-fatal problems a person should know about, e.g. "page 3: no text (needs OCR)"."""
    page_count: int | None = None
    """Pages in the file, for paged formats (PDF), blank ones included; None for the others."""


@dataclass(frozen=True)
class FileFailure:
    """A file that could not be loaded, with a reason a person can act on."""

    source: str
    reason: str
