"""One contract for the VectorIndex Protocol, run against every backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.index import INDEXES, VectorIndex, is_faiss_gpu_available

DIM = 16


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class VectorIndexContract:
    """Subclass and implement `make` and `load` to test a backend."""

    def make(self) -> VectorIndex:
        raise NotImplementedError

    def load(self, path: Path) -> Any:
        raise NotImplementedError

    def test_is_a_vector_index(self) -> None:
        assert isinstance(self.make(), VectorIndex)

    def test_search_finds_exact_vector_first(self) -> None:
        index, vecs = self.make(), _vectors(50)
        index.add(np.arange(100, 150), vecs)
        scores, ids = index.search(vecs[[3, 7]], 5)
        assert ids[:, 0].tolist() == [103, 107]
        assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
        assert np.all(np.diff(scores, axis=1) <= 1e-6), "scores must be sorted descending"

    def test_results_match_brute_force(self) -> None:
        index, vecs, queries = self.make(), _vectors(200), _vectors(10, seed=1)
        index.add(np.arange(200), vecs)
        _, ids = index.search(queries, 10)
        expected = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
        assert (ids == expected).all()

    def test_k_larger_than_index_pads_with_minus_one(self) -> None:
        index = self.make()
        index.add(np.array([1, 2]), _vectors(2))
        _, ids = index.search(_vectors(1, seed=3), 5)
        assert sorted(ids[0, :2].tolist()) == [1, 2]
        assert ids[0, 2:].tolist() == [-1, -1, -1]

    def test_empty_index_returns_nothing(self) -> None:
        _, ids = self.make().search(_vectors(2), 3)
        assert (ids == -1).all()

    def test_remove(self) -> None:
        index, vecs = self.make(), _vectors(20)
        index.add(np.arange(20), vecs)
        assert index.remove(np.array([5, 6, 99])) == 2
        assert len(index) == 18
        assert set(index.ids().tolist()) == set(range(20)) - {5, 6}
        _, ids = index.search(vecs[5:6], 20)
        assert 5 not in ids[0] and 6 not in ids[0]

    def test_allowed_ids_restrict_search(self) -> None:
        index, vecs = self.make(), _vectors(100)
        index.add(np.arange(100), vecs)
        allowed = np.array([10, 20, 30])
        _, ids = index.search(vecs[:1], 10, allowed_ids=allowed)
        found = [i for i in ids[0].tolist() if i >= 0]
        assert sorted(found) == [10, 20, 30], "all allowed ids, and only them, are returned"
        _, none = index.search(vecs[:1], 5, allowed_ids=np.array([], dtype=np.int64))
        assert (none == -1).all()

    def test_save_and_load_round_trip(self, tmp_path: Path) -> None:
        index, vecs = self.make(), _vectors(30)
        index.add(np.arange(1000, 1030), vecs)
        path = tmp_path / "index.bin"
        index.save(path)
        assert not path.with_name(path.name + ".tmp").exists()
        loaded = self.load(path)
        assert len(loaded) == 30
        assert sorted(loaded.ids().tolist()) == list(range(1000, 1030))
        _, ids = loaded.search(vecs[4:5], 1)
        assert ids[0, 0] == 1004

    def test_wrong_dimension_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="shape"):
            self.make().add(np.array([1]), np.zeros((1, DIM + 1), dtype=np.float32))


class TestEveryBackend(VectorIndexContract):
    """The contract, once per registered index type, made and loaded as a collection does."""

    use_gpu = False

    @pytest.fixture(autouse=True, params=sorted(INDEXES))
    def _backend(self, request: pytest.FixtureRequest) -> None:
        self.backend = INDEXES[request.param]

    def make(self) -> VectorIndex:
        return self.backend.new(DIM, use_gpu=self.use_gpu)

    def load(self, path: Path) -> Any:
        return self.backend.load(path, DIM, use_gpu=self.use_gpu)


@pytest.mark.gpu
@pytest.mark.skipif(not is_faiss_gpu_available(), reason="needs faiss-gpu and a CUDA device")
class TestEveryBackendOnGpu(TestEveryBackend):
    """The same with GPU placement asked for: backends that can search on a GPU copy do."""

    use_gpu = True


def test_a_small_flat_search_runs_in_one_thread_and_leaves_the_callers_setting() -> None:
    import faiss

    from retrieval.exact import FaissIndex

    index, vecs = FaissIndex(DIM, use_gpu=False), _vectors(50)
    index.add(np.arange(50), vecs)
    seen: list[int] = []
    real = index._index

    class Spy:  # records the thread count the search ran with
        ntotal = real.ntotal

        def search(self, *args: Any, **kwargs: Any) -> Any:
            seen.append(faiss.omp_get_max_threads())
            return real.search(*args, **kwargs)

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        index._index = Spy()
        assert index.search(vecs[:1], 3)[1][0, 0] == 0
        assert index.search(vecs[:1], 3, allowed_ids=np.array([4]))[1][0, 0] == 4
        assert seen == [1, 1] and faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)
