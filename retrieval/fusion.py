"""Rank fusion as pure functions."""

from __future__ import annotations

from collections.abc import Sequence


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = 60,
                           weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """Fuse ranked id lists: score(id) = sum of weight / (k + rank), rank from 1. Best first."""
    if k < 1:
        raise ValueError(f"RRF constant k {k!r} must be >= 1")
    weights = weights or [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[int, float] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def convex_fusion(dense: dict[int, float], keyword: dict[int, float],
                  alpha: float = 0.5) -> list[tuple[int, float]]:
    """Fuse scores: alpha x min-max-normalised dense + (1 - alpha) x keyword / max keyword, over
    the union of candidates (a missing keyword score counts as 0). Best first.

    Unlike rank fusion this keeps margins: a chunk that matches the query's exact wording far
    better than any other keeps that lead."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha {alpha!r} must be in [0, 1]")
    ids = set(dense) | set(keyword)
    if not ids:
        return []
    lo, hi = min(dense.values(), default=0.0), max(dense.values(), default=0.0)
    top_kw = max(keyword.values(), default=0.0)

    def norm_dense(i: int) -> float:
        return (dense.get(i, lo) - lo) / (hi - lo) if hi > lo else 0.0

    fused = {i: alpha * norm_dense(i) + (1 - alpha) * (keyword.get(i, 0.0) / top_kw if top_kw > 0
                                                      else 0.0) for i in ids}
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
