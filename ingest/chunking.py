"""Chunking with langchain-text-splitters, sizes counted in the embedder's tokens.

Recursive splitting by default; Markdown is first split on headers and each chunk keeps its header
path as metadata; paged documents (PDF) are split page by page so every chunk has one page number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from retrieval.types import ChunkRecord

from .types import LoadedDocument

MD_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


@dataclass(frozen=True)
class ChunkingConfig:
    chunk_size: int = field(default=256, metadata={"help": "maximum chunk length in tokens"})
    chunk_overlap: int = field(default=32, metadata={"help": "tokens shared by neighbours"})

    def __post_init__(self) -> None:
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_size {self.chunk_size!r} must be > 0")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ValueError(
                f"chunk_overlap {self.chunk_overlap!r} must be >= 0 and < chunk_size "
                f"{self.chunk_size!r}"
            )


class Chunker:
    """Splits loaded documents into ChunkRecords; `count_tokens` is the embedder's token counter."""

    def __init__(self, config: ChunkingConfig, count_tokens: Callable[[str], int]) -> None:
        self.config = config
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=config.chunk_size, chunk_overlap=config.chunk_overlap,
            length_function=count_tokens, separators=SEPARATORS, keep_separator="end",
            strip_whitespace=True,
        )
        self._md = MarkdownHeaderTextSplitter(headers_to_split_on=MD_HEADERS, strip_headers=True)
        self._count = count_tokens

    def split_text(self, text: str) -> list[str]:
        return [t for t in self._splitter.split_text(text) if t.strip()]

    def _split_under(self, heading: str, text: str) -> list[str]:
        """Split `text` so that each piece, prefixed by `heading`, still fits the chunk size."""
        budget = self.config.chunk_size - self._count(heading) - 1
        if budget <= self.config.chunk_overlap:
            return self.split_text(text)
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=budget, chunk_overlap=self.config.chunk_overlap,
            length_function=self._count, separators=SEPARATORS, keep_separator="end",
        )
        return [f"{heading}\n{t}" for t in splitter.split_text(text) if t.strip()]

    def chunk(self, doc: LoadedDocument) -> list[ChunkRecord]:
        if doc.format == "md":
            return self._chunk_markdown(doc)
        return [ChunkRecord(text=t, page=page.number)
                for page in doc.pages for t in self.split_text(page.text)]

    def _chunk_markdown(self, doc: LoadedDocument) -> list[ChunkRecord]:
        out: list[ChunkRecord] = []
        for page in doc.pages:
            for section in self._md.split_text(page.text):
                path = " > ".join(section.metadata[k] for _, k in MD_HEADERS
                                  if k in section.metadata)
                body = section.page_content.replace("  \n", "\n")
                pieces = self._split_under(path, body) if path else self.split_text(body)
                meta = {"section": path} if path else {}
                out += [ChunkRecord(text=t, page=page.number, metadata=meta) for t in pieces]
        return out
