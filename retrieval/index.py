"""Vector indexes: the `VectorIndex` Protocol and the registry of its implementations.

A collection names its index type (`flat`, `numpy`, `hnsw`, `ivfpq`); `backend(name)` gives what makes,
loads and files that type, so nothing outside a backend branches on the name. The backends live in
`exact.py` (flat FAISS, NumPy) and `ann.py` (HNSW, IVF-PQ with exact re-ranking).

Ids are the docstore's chunk ids (int64). Vectors are normalised, so scores are inner products.
Saving is atomic: write a temp file, fsync, rename, fsync the directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self, runtime_checkable

import numpy as np

from .ann import HnswIndex, IvfPqIndex
from .errors import UnknownIndex
from .exact import FaissIndex, NumpyIndex, fsync_replace, is_faiss_gpu_available

__all__ = ["INDEXES", "FaissIndex", "HnswIndex", "IndexBackend", "IvfPqIndex", "NumpyIndex",
           "VectorIndex", "backend", "fsync_replace", "is_faiss_gpu_available"]


@runtime_checkable
class VectorIndex(Protocol):
    dim: int

    def __init__(self, dim: int, use_gpu: bool | None = None) -> None:
        """A new, empty index. `use_gpu`: None = when faiss-gpu and a CUDA device are present."""

    @classmethod
    def load(cls, path: Path, dim: int, use_gpu: bool | None = None) -> Self:
        """The index `save` wrote at `path`; ValueError when it does not hold `dim`-d vectors."""
        ...

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


@dataclass(frozen=True)
class IndexBackend:
    """One index type a collection can name."""

    name: str
    file_name: str  # in the collection directory; never renamed, or existing collections lose it
    kind: type[VectorIndex]
    gpu: bool  # whether searches can run on a GPU copy; if not, `use_gpu` is not passed on
    about: str

    def new(self, dim: int, use_gpu: bool | None = None) -> VectorIndex:
        return self.kind(dim, use_gpu=self._placement(use_gpu))

    def load(self, path: Path, dim: int, use_gpu: bool | None = None) -> VectorIndex:
        return self.kind.load(path, dim, use_gpu=self._placement(use_gpu))

    def _placement(self, use_gpu: bool | None) -> bool | None:
        return use_gpu if self.gpu else False


INDEXES: dict[str, IndexBackend] = {b.name: b for b in [
    IndexBackend("flat", "index.faiss", FaissIndex, gpu=True,
                 about="exact search (FAISS); the default, fast enough up to ~1M chunks"),
    IndexBackend("numpy", "index.npz", NumpyIndex, gpu=False,
                 about="exact search in NumPy, without FAISS"),
    IndexBackend("hnsw", "index.hnsw.npz", HnswIndex, gpu=False,
                 about="FAISS HNSW graph (M=32, efSearch=128): fast approximate search, CPU only"),
    IndexBackend("ivfpq", "index.ivfpq.npz", IvfPqIndex, gpu=True,
                 about="FAISS IVF-PQ candidates re-ranked exactly; flat until 20,000 vectors"),
]}


def backend(name: str) -> IndexBackend:
    """The registered index type `name`; UnknownIndex naming the known ones otherwise."""
    try:
        return INDEXES[name]
    except KeyError:
        raise UnknownIndex(name, sorted(INDEXES)) from None
