"""An optional second stage of search: a cross-encoder rescores the first stage's top candidates.

A cross-encoder reads the query and a passage together, so it sees what a bi-encoder's two vectors
and BM25's term counts cannot (which claim a passage makes about which thing), at the cost of one
forward pass per candidate. `Reranker` is the Protocol (one method, `score`); `CrossEncoderReranker`
runs any sentence-transformers CrossEncoder directory (one trained by tuning/reranker.py, or a
user's own) and loads it at its first use or at an explicit `load()`. `RerankStage` holds a reranker
with how many candidates it rescores and how its scores are mixed with the first stage's order;
`rerank` is the pure function that reorders.

A hit keeps its cosine similarity as its score after reranking (thresholds such as the ask's
`min_score` mean the same with and without this stage): only the order changes.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import RerankerUnavailable
from .types import Hit

__all__ = ["RECORD", "CrossEncoderReranker", "RerankStage", "Reranker", "mix", "rerank"]

RECORD = "reranker.json"
"""The file in a model directory that tuning/reranker.py writes: its training record and the
`weight` tuned for it on held-out queries (read by `CrossEncoderReranker.weight`)."""


@runtime_checkable
class Reranker(Protocol):
    """Scores passages for a query: higher is more relevant; only the order within one call counts."""

    name: str

    def score(self, query: str, passages: Sequence[str]) -> list[float]: ...


def mix(scores: Sequence[float], weight: float) -> list[float]:
    """Per candidate (in first-stage order), `weight` x its reranker score scaled to [0, 1] over
    the candidates plus (1 - `weight`) x its first-stage position scaled the same way (first 1,
    last 0). `weight` 1: the reranker's order alone; 0: the first stage's."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"rerank weight {weight!r} must be between 0 and 1")
    n = len(scores)
    if n == 0:
        return []
    low, high = min(scores), max(scores)
    span = high - low
    position = [1.0 - i / (n - 1) if n > 1 else 1.0 for i in range(n)]
    scaled = [(s - low) / span if span > 0 else 0.0 for s in scores]
    return [weight * c + (1.0 - weight) * p for c, p in zip(scaled, position, strict=True)]


def rerank(hits: Sequence[Hit], scores: Sequence[float], weight: float = 1.0) -> list[Hit]:
    """`hits` (in first-stage order) reordered by `mix(scores, weight)`; ties keep that order."""
    if len(hits) != len(scores):
        raise ValueError(f"{len(scores)} scores for {len(hits)} hits")
    mixed = mix(scores, weight)
    order = sorted(range(len(hits)), key=lambda i: -mixed[i])
    return [hits[i] for i in order]


@dataclass(frozen=True)
class RerankStage:
    """A reranker, how many of the first stage's candidates it rescores (`top_n`; the rest follow
    in their first-stage order) and the weight of its scores against that order (see `mix`)."""

    reranker: Reranker
    top_n: int = 30
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.top_n <= 1000:
            raise ValueError(f"rerank top_n {self.top_n!r} must be between 1 and 1000")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"rerank weight {self.weight!r} must be between 0 and 1")

    def apply(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        head, tail = list(hits[:self.top_n]), list(hits[self.top_n:])
        if len(head) < 2:
            return head + tail
        scores = self.reranker.score(query, [h.text for h in head])
        return rerank(head, scores, self.weight) + tail


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from a local directory (never downloaded), scoring in
    batches of `batch_size` pairs truncated to `max_length` tokens. Nothing is read until the first
    `score` or `load`."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", batch_size: int = 32,
                 max_length: int = 256) -> None:
        self.model_dir = Path(model_dir)
        self.name = self.model_dir.name
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self._lock = threading.Lock()
        self._model: Any = None
        self._weight: float | None = None

    def record(self) -> dict[str, Any]:
        """The directory's `reranker.json`, or {} where it has none (a user's own cross-encoder)."""
        path = self.model_dir / RECORD
        if not path.is_file():
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}

    def weight(self) -> float:
        """The mixing weight tuned for this model (its record's `weight`), else 1: its order alone;
        read once."""
        if self._weight is None:
            self._weight = float(self.record().get("weight", 1.0))
        return self._weight

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            if not (self.model_dir / "config.json").is_file():
                raise RerankerUnavailable(
                    f"{self.model_dir} is not a cross-encoder directory (no config.json); train one "
                    "with `ragtune rerank train` or point RAGTUNE_RERANKER at your own")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import CrossEncoder

            try:
                self._model = CrossEncoder(str(self.model_dir), device=self.device,
                                           max_length=self.max_length, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise RerankerUnavailable(f"cannot load the cross-encoder {self.model_dir}: "
                                          f"{exc}") from exc

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        self.load()
        import torch

        with torch.inference_mode():
            out = self._model.predict([(query, p) for p in passages], batch_size=self.batch_size,
                                      show_progress_bar=False, activation_fn=torch.nn.Identity())
        return [float(s) for s in out]
