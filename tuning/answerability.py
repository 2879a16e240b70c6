"""Fit the answerability classifier (generation/answerability.py) on calibration answers.

Each row is one question that the pipeline answered (it did not refuse already), with its features
and whether the question was answerable. A standardised logistic regression is fitted, and the
threshold is the highest score that refuses at most `max_false_refusal` of the answerable
questions (counted over all answerable questions, so refusals made earlier use up the budget).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import fmean, pstdev
from typing import Any

from generation.answerability import FEATURES, AnswerabilityModel

from .errors import TuningError


def fit_answerability(rows: Sequence[tuple[Mapping[str, float], bool]], *,
                      already_refused: int = 0, answerable_total: int | None = None,
                      max_false_refusal: float = 0.05, c: float = 1.0,
                      features: Sequence[str] = FEATURES,
                      record: Mapping[str, Any] | None = None,
                      weights: Sequence[float] | None = None) -> AnswerabilityModel:
    """`rows`: (features, answerable) of the answered calibration questions. `already_refused`
    answerable questions were refused before the classifier (they count as false refusals).
    `features`: the ones the model uses (a subset of FEATURES). `weights`: one per row, how much
    it counts in the fit (e.g. to give a small calibration set of another kind its say); the
    threshold is still chosen on counts."""
    from sklearn.linear_model import LogisticRegression

    labels = [bool(y) for _, y in rows]
    if len(set(labels)) < 2:
        raise TuningError("answerability needs answered questions of both kinds to fit")
    if not features or set(features) - set(FEATURES):
        raise TuningError(f"features must be some of {', '.join(FEATURES)}, got {list(features)}")
    mean = {f: fmean(x[f] for x, _ in rows) for f in features}
    scale = {f: pstdev([x[f] for x, _ in rows]) or 1.0 for f in features}
    matrix = [[(x[f] - mean[f]) / scale[f] for f in features] for x, _ in rows]
    if weights is not None and (len(weights) != len(rows) or min(weights, default=1) <= 0):
        raise TuningError("weights must give one positive number per row")
    clf = LogisticRegression(C=c, max_iter=1000).fit(matrix, labels, sample_weight=weights)
    draft = AnswerabilityModel(weights=dict(zip(features, map(float, clf.coef_[0]), strict=True)),
                               bias=float(clf.intercept_[0]), mean=mean, scale=scale,
                               threshold=0.0)
    scores = [draft.score(x) for x, _ in rows]
    total = answerable_total if answerable_total is not None else sum(labels) + already_refused
    threshold, stats = choose_threshold(scores, labels, already_refused, total, max_false_refusal)
    return AnswerabilityModel(weights=draft.weights, bias=draft.bias, mean=mean, scale=scale,
                              threshold=threshold, record={**(record or {}), **stats,
                                                           "max_false_refusal": max_false_refusal})


def choose_threshold(scores: Sequence[float], labels: Sequence[bool], already_refused: int,
                     answerable_total: int, max_false_refusal: float) -> tuple[float, dict[str, Any]]:
    """The highest threshold whose false refusals (earlier ones included) stay within budget."""
    if answerable_total < 1:
        raise TuningError("no answerable questions to hold the false-refusal rate to")
    budget = int(max_false_refusal * answerable_total) - already_refused
    positives = sorted(s for s, y in zip(scores, labels, strict=True) if y)
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    # refusing below positives[budget] refuses exactly `budget` answerable ones (ties aside)
    threshold = positives[budget] if 0 <= budget < len(positives) else 0.0
    refused_neg = sum(s < threshold for s in negatives)
    refused_pos = sum(s < threshold for s in positives)
    # rounded down: rounding up could refuse the answerable question the threshold sits on
    return math.floor(threshold * 1e6) / 1e6, {
        "fit_rows": len(scores), "answerable_rows": len(positives),
        "unanswerable_rows": len(negatives),
        "fit_refusal_of_unanswered": round(refused_neg / len(negatives), 4) if negatives else None,
        "fit_false_refusal": round((refused_pos + already_refused) / answerable_total, 4)}
