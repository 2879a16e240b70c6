"""Approximate vector indexes for large collections: HNSW, and IVF-PQ with exact re-ranking.

Both keep the `VectorIndex` contract the exact indexes keep: scores are exact inner products, a
removed id is never returned, and a filtered search returns only allowed ids. When the allowed ids
are few (at most `exact_filter_max`, or under a quarter of the index) a graph walk or a few inverted
lists would reach too few of them, so those are scored exactly, which costs no more than the flat
index's scan; wider filters are applied inside the approximate search, whose width grows by
1 / (the allowed share) so it still meets as many allowed vectors as an unfiltered one. A query
that still comes back with fewer than k hits while more are eligible is answered exactly.

Each saves one .npz (the serialised faiss index beside ragtune's own arrays), atomically.
Measured trade-offs: README "Index types at scale" (bench/scale.py, bench/indexes.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .exact import (
    GPU_MAX_K,
    FaissIndex,
    check_vectors,
    fsync_replace,
    is_faiss_gpu_available,
    no_hits,
)

EXACT_FILTER_MAX = 20_000  # allowed ids scored exactly: 20k x 384 multiply-adds, about a millisecond
EXACT_FILTER_SHARE = 0.25  # below this share of the index, a filter is scored exactly too


def narrow(eligible: int, total: int, exact_max: int) -> bool:
    """Whether a filter allowing `eligible` of `total` vectors is better scored exactly."""
    return eligible <= exact_max or eligible < EXACT_FILTER_SHARE * total


def short_rows(ids: np.ndarray, k: int, eligible: int) -> np.ndarray:
    """Rows holding fewer hits than they could: those are answered again, exactly."""
    return np.flatnonzero((ids >= 0).sum(axis=1) < min(k, eligible))


def save_npz(path: Path, **arrays: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    fsync_replace(tmp, path)


class HnswIndex:
    """faiss `IndexHNSWFlat` (inner product; M links per node), with ragtune's ids kept beside it.

    faiss numbers a graph's vectors 0..n-1 and cannot take one out, so the index keeps `labels`
    (position -> chunk id) and a `live` mask. `remove` clears a position's bit (a tombstone) and every
    search skips dead positions through an `IDSelectorBitmap`. Once a quarter of the positions are
    dead the graph is rebuilt from the live vectors (read back from its own flat storage): dead
    vectors never cost more than a third extra. That rebuild takes as long as building the index
    (27 to 53 s per 100k 384-d vectors here), inside the `remove` that crosses the line. faiss has no
    GPU HNSW, so it runs on the CPU whatever `use_gpu` says. M and efConstruction are kept in the
    file; efSearch (at least k) is not, so a changed default reaches existing indexes.
    """

    rebuild_share = 0.25
    exact_filter_max = EXACT_FILTER_MAX

    def __init__(self, dim: int, use_gpu: bool | None = None, m: int = 32,
                 ef_construction: int = 64, ef_search: int = 128) -> None:
        import faiss

        self._faiss = faiss
        self.dim, self.m, self.ef_construction, self.ef_search = dim, m, ef_construction, ef_search
        self._graph = self._new_graph()
        self._labels = np.zeros(0, dtype=np.int64)  # capacity grows by doubling; the first n are used
        self._live = np.zeros(0, dtype=bool)

    def _new_graph(self) -> Any:
        graph = self._faiss.IndexHNSWFlat(self.dim, self.m, self._faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.ef_construction
        return graph

    @classmethod
    def load(cls, path: Path, dim: int, use_gpu: bool | None = None) -> HnswIndex:
        import faiss

        with np.load(path) as data:
            m, ef_construction = (int(x) for x in data["params"])
            index = cls(dim, m=m, ef_construction=ef_construction)
            index._graph = faiss.deserialize_index(data["graph"])
            index._labels, index._live = data["ids"], data["live"]
        if index._graph.d != dim:
            raise ValueError(f"index at {path} has dimension {index._graph.d}, expected {dim}")
        if index._graph.ntotal != len(index._labels):
            raise ValueError(f"index at {path} holds {index._graph.ntotal} vectors for "
                             f"{len(index._labels)} ids")
        return index

    @property
    def _n(self) -> int:
        return int(self._graph.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = check_vectors(ids, vectors, self.dim)
        if not len(ids):
            return
        n, end = self._n, self._n + len(ids)
        if end > len(self._labels):
            size = max(end, 2 * len(self._labels))
            self._labels = np.resize(self._labels, size)
            self._live = np.resize(self._live, size)
        self._graph.add(vectors)
        self._labels[n:end], self._live[n:end] = ids, True

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        n = self._n
        if not len(ids) or not n:
            return 0
        hit = self._live[:n] & np.isin(self._labels[:n], ids)
        self._live[:n] &= ~hit
        if n - len(self) > self.rebuild_share * n:
            self._rebuild()
        return int(hit.sum())

    def _rebuild(self) -> None:
        keep = np.flatnonzero(self._live[:self._n])
        vectors = self._graph.reconstruct_batch(keep) if len(keep) else None
        self._graph = self._new_graph()
        if vectors is not None:
            self._graph.add(vectors)
        self._labels, self._live = self._labels[keep], np.ones(len(keep), dtype=bool)

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        n, live = self._n, self._live[:self._n]
        mask = live if allowed_ids is None else live & np.isin(self._labels[:n], allowed_ids)
        eligible = int(mask.sum())
        if not eligible:
            return no_hits(len(queries), k)
        bitmap = np.packbits(mask, bitorder="little")  # alive while the selector points into it
        selector = (None if eligible == n
                    else self._faiss.IDSelectorBitmap(n, self._faiss.swig_ptr(bitmap)))
        if allowed_ids is not None and narrow(eligible, len(self), self.exact_filter_max):
            scores, pos = self._graph.storage.search(queries, k, params=self._flat_params(selector))
        else:
            ef = math.ceil(max(self.ef_search, k) * n / eligible)
            params = self._faiss.SearchParametersHNSW(efSearch=ef)  # type: ignore[attr-defined]  # not in faiss's stubs
            if selector is not None:
                params.sel = selector
            scores, pos = self._graph.search(queries, k, params=params)
            redo = short_rows(pos, k, eligible)
            if len(redo):
                scores[redo], pos[redo] = self._graph.storage.search(
                    queries[redo], k, params=self._flat_params(selector))
        return scores, np.where(pos >= 0, self._labels[np.maximum(pos, 0)], -1)

    def _flat_params(self, selector: Any) -> Any:
        return None if selector is None else self._faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]

    def ids(self) -> np.ndarray:
        return self._labels[:self._n][self._live[:self._n]].copy()

    def save(self, path: Path) -> None:
        n = self._n
        save_npz(path, graph=self._faiss.serialize_index(self._graph), ids=self._labels[:n],
                 live=self._live[:n], params=np.array([self.m, self.ef_construction]))

    def __len__(self) -> int:
        return int(self._live[:self._n].sum())


def pq_subvectors(dim: int) -> int:
    """PQ sub-vectors: the most that leave each at least 8 dimensions (48 for 384-d), dividing dim."""
    return max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)


class IvfPqIndex:
    """faiss `IndexIVFPQ` finds candidates; their exact inner products rank them.

    The full vectors live in a flat `FaissIndex` (the `flat` backend's), which is the whole index until
    it holds `train_at` vectors: IVF-PQ must be trained on a sample first, and below that a flat scan
    takes a few milliseconds. At `train_at` the coarse quantiser (nlist = 4·√n lists, at most n/39) and the
    product quantiser (`pq_subvectors` codes of 8 bits) are trained on the vectors present, and all of
    them are encoded. Each time the index has grown 4× since, it is trained again from scratch (nlist
    doubles); the trainings form a geometric series, about a third more than the last one alone.
    Removing never retrains. A search scans `nprobe` lists for `k_factor`·k candidates by their codes
    and ranks those exactly: 50·k gave recall@10 0.999 at 1M vectors, 10·k only 0.602.
    With faiss-gpu, unfiltered searches run on GPU copies (the flat store and the IVF-PQ index).
    """

    train_at = 20_000  # flat scan of 20k 384-d: 4.6 ms here; trained at 10k: 54 s and worse recall (README)
    regrow = 4
    nprobe = 16
    k_factor = 50
    exact_filter_max = EXACT_FILTER_MAX

    def __init__(self, dim: int, use_gpu: bool | None = None) -> None:
        import faiss

        self._faiss = faiss
        self.dim = dim
        self._use_gpu = is_faiss_gpu_available() if use_gpu is None else use_gpu
        self._store = FaissIndex(dim, use_gpu=self._use_gpu)
        self._ivf: Any = None
        self._trained_at = 0
        self._gpu: Any = None
        self._gpu_res: Any = None

    @classmethod
    def load(cls, path: Path, dim: int, use_gpu: bool | None = None) -> IvfPqIndex:
        import faiss

        index = cls(dim, use_gpu=use_gpu)
        with np.load(path) as data:
            index._store = FaissIndex.deserialize(data["store"], dim, use_gpu=index._use_gpu)
            if data["ivf"].size:
                index._ivf = faiss.deserialize_index(data["ivf"])
            index._trained_at = int(data["trained_at"])
        return index

    @property
    def trained(self) -> bool:
        return self._ivf is not None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = check_vectors(ids, vectors, self.dim)
        if not len(ids):
            return
        self._store.add(ids, vectors)
        self._gpu = None
        if self._ivf is not None and len(self) < self.regrow * self._trained_at:
            self._ivf.add_with_ids(vectors, ids)
        elif len(self) >= self.train_at:
            self._train()

    def _train(self) -> None:
        faiss, ids = self._faiss, self._store.ids()
        n = len(ids)
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
        ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(self.dim), self.dim, nlist,
                               pq_subvectors(self.dim), 8, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, size=min(n, 50 * nlist), replace=False)
        ivf.train(self._store.vectors(ids[np.sort(sample)]))
        for start in range(0, n, 100_000):  # in slices: never a second copy of every vector
            block = ids[start:start + 100_000]
            ivf.add_with_ids(self._store.vectors(block), block)
        ivf.nprobe = self.nprobe  # unfiltered searches (and a GPU copy) read it from the index
        self._ivf, self._trained_at = ivf, n

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        removed = self._store.remove(ids)
        if removed and self._ivf is not None:
            self._ivf.remove_ids(self._faiss.IDSelectorBatch(ids))
            self._gpu = None
        return removed

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        n = len(self)
        # an estimate from above: ids not in the index only make rows look short (then exact)
        eligible = n if allowed_ids is None else min(n, len(np.unique(allowed_ids)))
        wanted = min(n, k * self.k_factor)
        if (self._ivf is None or n < self.train_at or 4 * wanted > n
                or (allowed_ids is not None and narrow(eligible, n, self.exact_filter_max))):
            return self._store.search(queries, k, allowed_ids)
        cand = self._candidates(queries, wanted, allowed_ids, eligible / n)
        scores, ids = self._rerank(queries, cand, k)
        redo = short_rows(ids, k, eligible)
        if len(redo):
            scores[redo], ids[redo] = self._store.search(queries[redo], k, allowed_ids)
        return scores, ids

    def _candidates(self, queries: np.ndarray, wanted: int, allowed_ids: np.ndarray | None,
                    share: float) -> np.ndarray:
        if allowed_ids is None:
            return self._searcher(wanted).search(queries, wanted)[1]
        allowed = np.ascontiguousarray(allowed_ids, dtype=np.int64)
        params = self._faiss.SearchParametersIVF(  # type: ignore[call-arg]
            sel=self._faiss.IDSelectorBatch(allowed), nprobe=math.ceil(self.nprobe / share))
        return self._ivf.search(queries, wanted, params=params)[1]

    def _rerank(self, queries: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's candidates ranked by their exact inner product with the query."""
        out_s, out_i = no_hits(len(queries), k)
        rows = max(1, (1 << 22) // (cand.shape[1] * self.dim))  # 16 MB of vectors at a time
        for start in range(0, len(queries), rows):
            c, q = cand[start:start + rows], queries[start:start + rows]
            valid = c >= 0
            if not valid.any():
                continue
            vecs = self._store.vectors(np.where(valid, c, c[valid][0]).ravel())
            sims = np.einsum("rcd,rd->rc", vecs.reshape(*c.shape, self.dim), q)
            sims[~valid] = -np.inf
            top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            s = np.take_along_axis(sims, top, axis=1)
            i = np.where(np.isfinite(s), np.take_along_axis(c, top, axis=1), -1)
            out_s[start:start + rows, :s.shape[1]], out_i[start:start + rows, :i.shape[1]] = s, i
        return out_s, out_i

    def _searcher(self, k: int) -> Any:
        if not self._use_gpu or k > GPU_MAX_K:
            return self._ivf
        if self._gpu is None:
            if self._gpu_res is None:
                self._gpu_res = self._faiss.StandardGpuResources()
            options = self._faiss.GpuClonerOptions()
            # for IVF-PQ this means float16 lookup tables: 48 x 256 float32 overflow shared memory
            options.useFloat16 = True
            self._gpu = self._faiss.index_cpu_to_gpu(self._gpu_res, 0, self._ivf, options)
        return self._gpu

    def ids(self) -> np.ndarray:
        return self._store.ids()

    def save(self, path: Path) -> None:
        ivf = (self._faiss.serialize_index(self._ivf) if self._ivf is not None
               else np.zeros(0, dtype=np.uint8))
        save_npz(path, store=self._store.serialize(), ivf=ivf,
                 trained_at=np.array(self._trained_at))

    def __len__(self) -> int:
        return len(self._store)
