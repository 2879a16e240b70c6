"""Search as a library call: a question in words, the collection's top-k chunks out."""

from __future__ import annotations

from .collection import SEARCH_MODES, Collection
from .embedder import Embedder
from .types import Hit, SearchFilter

__all__ = ["SEARCH_MODES", "search"]


def search(collection: Collection, embedder: Embedder, query: str, k: int,
           flt: SearchFilter | None = None, mode: str = "hybrid") -> list[Hit]:
    """The top-`k` chunks of `collection` for `query`, restricted by `flt`: ranked by `mode`,
    "hybrid" (dense and BM25 scores fused), "dense" (cosine of `embedder`'s vectors) or "keyword"."""
    vectors = embedder.embed_batch([query])
    return collection.search(vectors, k, flt, query_texts=[query], mode=mode)[0]
