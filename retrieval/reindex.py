"""Building a collection's vector index anew from the docstore's stored embeddings, as any index
type, and measuring the built index's recall@10 against exact search.

The docstore keeps every chunk's embedding, so changing a grown collection from `flat` to `hnsw` or
`ivfpq` (IVF-PQ with exact re-ranking) re-embeds nothing: the vectors are read back in batches
and added to the new index, which trains itself (IVF-PQ) as they come. The recall is measured on
the index as built: `queries` stored vectors, sampled with a fixed seed, searched in it and in an
exact index of the same vectors, recall@k = the share of the exact top k it returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .docstore import Docstore
from .index import VectorIndex, backend

READ_BATCH = 20_000


@dataclass(frozen=True)
class BuiltIndex:
    index: VectorIndex
    index_type: str
    chunks: int
    build_s: float
    recall: float | None
    """recall@k against exact search on `queries` stored vectors (None for an empty collection)."""
    queries: int
    k: int

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index_type, "chunks": self.chunks, "build_s": round(self.build_s, 2),
                f"recall@{self.k}": None if self.recall is None else round(self.recall, 4),
                "queries": self.queries}


def build_from_docstore(docstore: Docstore, dim: int, index_type: str, *, queries: int = 200,
                        k: int = 10, seed: int = 0, use_gpu: bool | None = None) -> BuiltIndex:
    """A new `index_type` index of every stored embedding, with its recall@k measured."""
    if queries < 1 or k < 1:
        raise ValueError(f"queries {queries!r} and k {k!r} must be >= 1")
    kind = backend(index_type)
    ids = docstore.chunk_ids()
    index = kind.new(dim, use_gpu=use_gpu)
    exact = backend("flat").new(dim, use_gpu=False)
    build_s = 0.0
    for start in range(0, len(ids), READ_BATCH):
        for got, vectors in docstore.embeddings(ids[start:start + READ_BATCH], dim):
            t = time.perf_counter()
            index.add(got, vectors)
            build_s += time.perf_counter() - t
            exact.add(got, vectors)
    recall, asked = _recall(index, exact, docstore, dim, ids, queries, k, seed)
    return BuiltIndex(index, index_type, len(ids), build_s, recall, asked, k)


def _recall(index: VectorIndex, exact: VectorIndex, docstore: Docstore, dim: int, ids: np.ndarray,
            queries: int, k: int, seed: int) -> tuple[float | None, int]:
    if not len(ids):
        return None, 0
    sample = np.random.default_rng(seed).choice(ids, size=min(queries, len(ids)), replace=False)
    vectors = np.concatenate([v for _, v in docstore.embeddings(np.sort(sample), dim)])
    _, want = exact.search(vectors, k)
    _, got = index.search(vectors, k)
    found = sum(len(set(w[w >= 0]) & set(g[g >= 0])) for w, g in zip(want, got, strict=True))
    return found / max(int((want >= 0).sum()), 1), len(vectors)
