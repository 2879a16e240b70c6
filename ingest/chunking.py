"""Chunking with langchain-text-splitters, sizes counted in the embedder's tokens.

Recursive splitting by default; Markdown is first grouped under its headers and each chunk keeps its
header path as metadata; paged documents (PDF) are split page by page so every chunk has one page
number. Long texts reach the splitter in bounded windows (ingest/sections.py) and chunks come out one
by one (`iter_chunks`), so a large file costs time in proportion to its size and memory for its chunks
only. Token counts of short pieces are remembered: the splitter counts each piece again as it slides
its overlap, and a page of one repeated character or word would count it thousands of times.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from langchain_text_splitters import RecursiveCharacterTextSplitter

from retrieval.types import ChunkRecord

from .sections import MD_LEVELS, markdown_sections, windows
from .types import LoadedDocument

MD_HEADERS = list(MD_LEVELS.items())
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]
MEMO_ENTRIES = 16_384
MEMO_CHARS = 256


def memoized(count_tokens: Callable[[str], int]) -> Callable[[str], int]:
    """`count_tokens` remembering its last MEMO_ENTRIES answers for texts of up to MEMO_CHARS."""
    cached = functools.lru_cache(maxsize=MEMO_ENTRIES)(count_tokens)

    def count(text: str) -> int:
        return cached(text) if len(text) <= MEMO_CHARS else count_tokens(text)

    return count


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
        self._count = memoized(count_tokens)
        self._splitter = self._recursive(config.chunk_size)
        self._under: dict[int, RecursiveCharacterTextSplitter] = {}

    def _recursive(self, size: int) -> RecursiveCharacterTextSplitter:
        return RecursiveCharacterTextSplitter(
            chunk_size=size, chunk_overlap=self.config.chunk_overlap, length_function=self._count,
            separators=SEPARATORS, keep_separator="end", strip_whitespace=True,
        )

    def split_text(self, text: str) -> list[str]:
        return list(self._split(text, self._splitter))

    def _split(self, text: str, splitter: RecursiveCharacterTextSplitter) -> Iterator[str]:
        for window in windows(text):
            yield from (t for t in splitter.split_text(window) if t.strip())

    def _split_under(self, heading: str, text: str) -> Iterator[str]:
        """Split `text` so that each piece, prefixed by `heading`, still fits the chunk size."""
        budget = self.config.chunk_size - self._count(heading) - 1
        if budget <= self.config.chunk_overlap:
            yield from self._split(text, self._splitter)
            return
        splitter = self._under.get(budget)
        if splitter is None:
            splitter = self._under[budget] = self._recursive(budget)
        yield from (f"{heading}\n{t}" for t in self._split(text, splitter))

    def chunk(self, doc: LoadedDocument) -> list[ChunkRecord]:
        return list(self.iter_chunks(doc))

    def iter_chunks(self, doc: LoadedDocument) -> Iterator[ChunkRecord]:
        """The chunks of `doc` in order, made as they are asked for."""
        if doc.format == "md":
            yield from self._markdown_chunks(doc)
            return
        for page in doc.pages:
            yield from (ChunkRecord(text=t, page=page.number)
                        for t in self._split(page.text, self._splitter))

    def _markdown_chunks(self, doc: LoadedDocument) -> Iterator[ChunkRecord]:
        for page in doc.pages:
            for headers, section in markdown_sections(page.text):
                body = section.replace("  \n", "\n")
                path = " > ".join(headers[k] for _, k in MD_HEADERS if k in headers)
                pieces = self._split_under(path, body) if path else self._split(body, self._splitter)
                meta = {"section": path} if path else {}
                yield from (ChunkRecord(text=t, page=page.number, metadata=meta) for t in pieces)
