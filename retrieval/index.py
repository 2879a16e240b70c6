"""Vector indexes behind the `VectorIndex` Protocol: FAISS (CPU, copied to GPU when present) and exact NumPy.

Ids are the docstore's chunk ids (int64). Vectors are normalised, so scores are inner products.
Saving is atomic: write a temp file, fsync, rename, fsync the directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VectorIndex(Protocol):
    dim: int

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; missing slots have id -1. `allowed_ids` restricts
        the search to those ids inside the index, not by over-fetching."""
        ...

    def remove(self, ids: np.ndarray) -> int: ...

    def ids(self) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...

    def __len__(self) -> int: ...


def is_faiss_gpu_available() -> bool:
    try:
        import faiss
    except ImportError:
        return False
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def fsync_replace(tmp: Path, final: Path) -> None:
    """Make `tmp` durable, then atomically put it at `final`."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    dfd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _check(ids: np.ndarray, vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"vectors must have shape (n, {dim}), got {vectors.shape}")
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
    return ids, vectors


class FaissIndex:
    """Exact inner-product search with FAISS (`IndexIDMap2` over `IndexFlatIP`).

    With faiss-gpu and a CUDA device, unfiltered searches run on a GPU copy that is refreshed after
    changes; the CPU index stays the one that is written to disk, so both paths share this code.
    """

    def __init__(self, dim: int, use_gpu: bool | None = None, inner: Any = None) -> None:
        import faiss

        self._faiss = faiss
        self.dim = dim
        self._index = inner if inner is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._use_gpu = is_faiss_gpu_available() if use_gpu is None else use_gpu
        self._gpu: Any = None
        self._gpu_res: Any = None

    @classmethod
    def load(cls, path: Path, dim: int, use_gpu: bool | None = None) -> FaissIndex:
        import faiss

        inner = faiss.read_index(str(path))
        if inner.d != dim:
            raise ValueError(f"index at {path} has dimension {inner.d}, expected {dim}")
        return cls(dim, use_gpu=use_gpu, inner=inner)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = _check(ids, vectors, self.dim)
        if len(ids):
            self._index.add_with_ids(vectors, ids)
            self._gpu = None

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        self._gpu = None
        return int(self._index.remove_ids(self._faiss.IDSelectorBatch(ids)))

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if allowed_ids is not None:
            allowed = np.ascontiguousarray(allowed_ids, dtype=np.int64)
            if not len(allowed):
                return _empty(len(queries), k)
            params = self._faiss.SearchParameters(sel=self._faiss.IDSelectorBatch(allowed))  # type: ignore[call-arg]
            scores, ids = self._index.search(queries, k, params=params)
            return scores, ids
        scores, ids = self._searcher().search(queries, k)
        return scores, ids

    def _searcher(self) -> Any:
        if not self._use_gpu or self._index.ntotal == 0:
            return self._index
        if self._gpu is None:
            if self._gpu_res is None:
                self._gpu_res = self._faiss.StandardGpuResources()
            self._gpu = self._faiss.index_cpu_to_gpu(self._gpu_res, 0, self._index)
        return self._gpu

    def ids(self) -> np.ndarray:
        return self._faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        self._faiss.write_index(self._index, str(tmp))
        fsync_replace(tmp, path)

    def __len__(self) -> int:
        return int(self._index.ntotal)


def _empty(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)


class NumpyIndex:
    """Exact brute-force search in NumPy: the reference backend (and a dependency-free fallback)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids = np.zeros(0, dtype=np.int64)
        self._vecs = np.zeros((0, dim), dtype=np.float32)

    @classmethod
    def load(cls, path: Path, dim: int) -> NumpyIndex:
        with np.load(path) as data:
            index = cls(dim)
            index._ids, index._vecs = data["ids"], data["vectors"]
        if index._vecs.shape[1] != dim:
            raise ValueError(f"index at {path} has dimension {index._vecs.shape[1]}, expected {dim}")
        return index

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = _check(ids, vectors, self.dim)
        self._ids = np.concatenate([self._ids, ids])
        self._vecs = np.concatenate([self._vecs, vectors])

    def remove(self, ids: np.ndarray) -> int:
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        removed = int((~keep).sum())
        self._ids, self._vecs = self._ids[keep], self._vecs[keep]
        return removed

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        ids, vecs = self._ids, self._vecs
        if allowed_ids is not None:
            mask = np.isin(ids, np.asarray(allowed_ids, dtype=np.int64))
            ids, vecs = ids[mask], vecs[mask]
        out_s, out_i = _empty(len(queries), k)
        if not len(ids):
            return out_s, out_i
        sims = queries @ vecs.T
        top = min(k, len(ids))
        order = np.argsort(-sims, axis=1, kind="stable")[:, :top]
        out_s[:, :top] = np.take_along_axis(sims, order, axis=1)
        out_i[:, :top] = ids[order]
        return out_s, out_i

    def ids(self) -> np.ndarray:
        return self._ids.copy()

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, ids=self._ids, vectors=self._vecs)
        fsync_replace(tmp, path)

    def __len__(self) -> int:
        return len(self._ids)
