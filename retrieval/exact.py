"""The exact vector indexes: FAISS flat (CPU, copied to GPU when present) and NumPy; and the helpers
every backend shares (argument checks, the empty result, atomic saving).

Ids are the docstore's chunk ids (int64). Vectors are normalised, so scores are inner products.
Saving is atomic: write a temp file, fsync, rename, fsync the directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

GPU_MAX_K = 2048  # the most results faiss's GPU indexes return per query; larger k runs on the CPU
# A search that scans fewer bytes of vectors than this runs in one thread: on SciFact (12,725 x 384,
# 19.5 MB) one query takes 0.77 ms in one thread and 0.96 ms in two on 2 cores, whose other
# thread waits whenever the core is busy with anything else (bench.query's in-process search).
SERIAL_SCAN_BYTES = 32 << 20


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


def check_vectors(ids: np.ndarray, vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
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

    @classmethod
    def deserialize(cls, data: np.ndarray, dim: int, use_gpu: bool | None = None) -> FaissIndex:
        """The index `serialize` wrote into a byte array (so another backend can keep it in its file)."""
        import faiss

        inner = faiss.deserialize_index(data)
        if inner.d != dim:
            raise ValueError(f"stored flat index has dimension {inner.d}, expected {dim}")
        return cls(dim, use_gpu=use_gpu, inner=inner)

    def serialize(self) -> np.ndarray:
        return self._faiss.serialize_index(self._index)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, one row each (every id must be in the index)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = check_vectors(ids, vectors, self.dim)
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
                return no_hits(len(queries), k)
            params = self._faiss.SearchParameters(sel=self._faiss.IDSelectorBatch(allowed))  # type: ignore[call-arg]
            with self._threads(len(queries)):
                scores, ids = self._index.search(queries, k, params=params)
            return scores, ids
        with self._threads(len(queries)):
            scores, ids = self._searcher(k).search(queries, k)
        return scores, ids

    @contextmanager
    def _threads(self, queries: int) -> Iterator[None]:
        """One OpenMP thread for a small scan. The setting is the calling thread's own (OpenMP
        keeps it per thread), so searches in other threads keep theirs."""
        if queries * self._index.ntotal * self.dim * 4 > SERIAL_SCAN_BYTES:
            yield
            return
        before = self._faiss.omp_get_max_threads()
        self._faiss.omp_set_num_threads(1)
        try:
            yield
        finally:
            self._faiss.omp_set_num_threads(before)

    def _searcher(self, k: int) -> Any:
        if not self._use_gpu or self._index.ntotal == 0 or k > GPU_MAX_K:
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


def no_hits(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)


class NumpyIndex:
    """Exact brute-force search in NumPy: the reference backend (and a dependency-free fallback).
    `use_gpu` is accepted so every backend is made alike; NumPy always runs on the CPU."""

    def __init__(self, dim: int, use_gpu: bool | None = None) -> None:
        self.dim = dim
        self._ids = np.zeros(0, dtype=np.int64)
        self._vecs = np.zeros((0, dim), dtype=np.float32)

    @classmethod
    def load(cls, path: Path, dim: int, use_gpu: bool | None = None) -> NumpyIndex:
        with np.load(path) as data:
            index = cls(dim)
            index._ids, index._vecs = data["ids"], data["vectors"]
        if index._vecs.shape[1] != dim:
            raise ValueError(f"index at {path} has dimension {index._vecs.shape[1]}, expected {dim}")
        return index

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = check_vectors(ids, vectors, self.dim)
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
        out_s, out_i = no_hits(len(queries), k)
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
