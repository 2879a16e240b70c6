"""Search as a library call: a question in words, the collection's top-k chunks out."""

from __future__ import annotations

from .collection import SEARCH_MODES, Collection
from .embedder import Embedder
from .rerank import RerankStage
from .types import Hit, SearchFilter

__all__ = ["SEARCH_MODES", "search"]


def search(collection: Collection, embedder: Embedder, query: str, k: int,
           flt: SearchFilter | None = None, mode: str = "hybrid",
           rerank: RerankStage | None = None) -> list[Hit]:
    """The top-`k` chunks of `collection` for `query`, restricted by `flt`: ranked by `mode`,
    "hybrid" (dense and BM25 scores fused), "dense" (cosine of `embedder`'s vectors) or "keyword";
    then, given a `rerank` stage, its top `rerank.top_n` candidates reordered by its reranker."""
    vectors = embedder.embed_batch([query])
    depth = k if rerank is None else max(k, rerank.top_n)
    hits = collection.search(vectors, depth, flt, query_texts=[query], mode=mode)[0]
    if rerank is None:
        return hits
    return rerank.apply(query, hits)[:k]
