"""Ranking metrics against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from retrieval.metrics import dedupe_ranking, hit_at_k, mrr_at_k, ndcg_at_k, recall_at_k


def test_ndcg_perfect_and_partial() -> None:
    rel = {"a": 1, "b": 1}
    assert ndcg_at_k(["a", "b", "c"], rel, 10) == pytest.approx(1.0)
    # one relevant doc at rank 2 of two relevant: (1/log2(3)) / (1 + 1/log2(3))
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["c", "a"], rel, 10) == pytest.approx(expected)
    assert ndcg_at_k(["c", "d"], rel, 10) == 0.0
    assert ndcg_at_k(["c", "a"], rel, 1) == 0.0


def test_graded_ndcg_prefers_higher_grade_first() -> None:
    rel = {"a": 2, "b": 1}
    assert ndcg_at_k(["a", "b"], rel, 2) > ndcg_at_k(["b", "a"], rel, 2)


def test_recall_mrr_hit() -> None:
    rel = {"a": 1, "b": 1}
    assert recall_at_k(["x", "a", "y"], rel, 10) == 0.5
    assert mrr_at_k(["x", "a"], rel, 10) == 0.5
    assert mrr_at_k(["x", "a"], rel, 1) == 0.0
    assert hit_at_k(["x", "b"], rel, 2) == 1.0
    with pytest.raises(ValueError, match="k 0"):
        recall_at_k([], rel, 0)


def test_dedupe_keeps_best_rank() -> None:
    assert dedupe_ranking(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]
