"""What the contract's small indexes cannot reach: HNSW's tombstones, rebuild and graph-side filters;
IVF-PQ trained, re-ranked exactly, filtered, retrained as it grows, saved and loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.ann import HnswIndex, IvfPqIndex, pq_subvectors

DIM = 16


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors near 50 centres, as embeddings are: on uniform noise no codes rank well."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((50, DIM))
    v = (centres[rng.integers(0, 50, n)] + 0.5 * rng.standard_normal((n, DIM))).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _truth(queries: np.ndarray, vecs: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vecs.T), axis=1)[:, :k]]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)]))


def test_pq_subvectors_leave_eight_dimensions_each() -> None:
    assert [pq_subvectors(d) for d in (384, 768, 16, 100, 7)] == [48, 96, 2, 10, 1]


def test_hnsw_tombstones_then_rebuilds(tmp_path: Path) -> None:
    index, vecs = HnswIndex(DIM), _vectors(400)
    index.add(np.arange(400), vecs)
    assert index.remove(np.arange(0, 60)) == 60  # 15 %: tombstones only
    assert index._graph.ntotal == 400 and len(index) == 340
    index.save(tmp_path / "i")
    loaded = HnswIndex.load(tmp_path / "i", DIM)
    _, ids = loaded.search(vecs[:60], 5)
    assert not np.isin(ids, np.arange(60)).any(), "a tombstoned id came back after load"
    assert index.remove(np.arange(60, 120)) == 60  # 30 % dead: rebuilt from the live vectors
    assert index._graph.ntotal == 280 and sorted(index.ids().tolist()) == list(range(120, 400))
    _, ids = index.search(vecs[200:210], 1)
    assert ids[:, 0].tolist() == list(range(200, 210))


def test_hnsw_wide_filter_walks_the_graph_and_keeps_only_allowed() -> None:
    index, vecs, queries = HnswIndex(DIM), _vectors(2000), _vectors(20, seed=1)
    index.exact_filter_max = 0  # every filter over a quarter of the index goes through the graph
    index.add(np.arange(2000), vecs)
    allowed = np.arange(0, 2000, 2)
    _, ids = index.search(queries, 10, allowed_ids=allowed)
    assert np.isin(ids, allowed).all()
    assert _recall(ids, _truth(queries, vecs[allowed], allowed, 10)) >= 0.95


def test_hnsw_duplicate_of_a_removed_id_is_the_new_vector() -> None:
    index, vecs = HnswIndex(DIM), _vectors(3)
    index.add(np.array([1, 2]), vecs[:2])
    index.remove(np.array([1]))
    index.add(np.array([1]), vecs[2:])
    _, ids = index.search(vecs[2:], 1)
    assert ids[0, 0] == 1 and len(index) == 2


@pytest.fixture
def trained() -> tuple[IvfPqIndex, np.ndarray]:
    index, vecs = IvfPqIndex(DIM, use_gpu=False), _clustered(3000)
    index.train_at = 2000
    index.add(np.arange(1000), vecs[:1000])
    assert not index.trained, "too few vectors: still a flat index"
    index.add(np.arange(1000, 3000), vecs[1000:])
    assert index.trained and index._ivf.ntotal == 3000
    return index, vecs


def test_ivfpq_reranks_candidates_exactly(trained: tuple[IvfPqIndex, np.ndarray]) -> None:
    index, vecs = trained
    queries = _clustered(50, seed=1)
    scores, ids = index.search(queries, 10)
    assert _recall(ids, _truth(queries, vecs, np.arange(3000), 10)) >= 0.95
    exact = np.einsum("qkd,qd->qk", vecs[ids], queries)
    np.testing.assert_allclose(scores, exact, atol=1e-5)  # scores are exact, not PQ estimates
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_ivfpq_remove_filter_save_load(trained: tuple[IvfPqIndex, np.ndarray], tmp_path: Path) -> None:
    index, vecs = trained
    index.exact_filter_max = 0
    assert index.remove(np.arange(100)) == 100 and index._ivf.ntotal == 2900
    _, ids = index.search(vecs[:100], 10)
    assert not np.isin(ids, np.arange(100)).any()
    allowed = np.arange(1000, 3000)  # two thirds: filtered inside the inverted lists
    queries = _clustered(20, seed=2)
    _, ids = index.search(queries, 10, allowed_ids=allowed)
    assert np.isin(ids, allowed).all()
    assert _recall(ids, _truth(queries, vecs[allowed], allowed, 10)) >= 0.95
    index.save(tmp_path / "i")
    loaded = IvfPqIndex.load(tmp_path / "i", DIM, use_gpu=False)
    assert loaded.trained and len(loaded) == 2900
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], index.search(queries, 10)[1])


def test_ivfpq_trains_again_after_growing_fourfold(trained: tuple[IvfPqIndex, np.ndarray]) -> None:
    index, _ = trained
    first = index._ivf
    index.add(np.arange(3000, 8000), _clustered(5000, seed=3))
    assert index._ivf is first and index._trained_at == 3000
    index.add(np.arange(8000, 12_000), _clustered(4000, seed=4))
    assert index._ivf is not first and index._trained_at == 12_000
    assert index._ivf.nlist > first.nlist
