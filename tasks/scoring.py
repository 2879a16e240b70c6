"""Scores of one output against its reference, as pure functions, and the rule each metric names.

accuracy (a choice), contains and exact (short answers, SQuAD-normalised), token_f1 (SQuAD's F1, used
as ROUGE-1 F for summaries), chrf (character n-gram F-score, Popović 2015, the usual translation
score for short sentences) and field_accuracy (JSON fields that equal the reference's).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation or articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def exact(output: str, answers: Sequence[str]) -> float:
    return float(any(normalise(output) == normalise(a) for a in answers))


def contains(output: str, answers: Sequence[str]) -> float:
    """1 when some reference answer appears, normalised, inside the normalised output."""
    out = f" {normalise(output)} "
    return float(any(normalise(a) and f" {normalise(a)} " in out for a in answers))


def token_f1(output: str, answers: Sequence[str]) -> float:
    """The best token-overlap F1 against any reference (SQuAD's F1; ROUGE-1 F for one reference)."""
    best = 0.0
    pred = normalise(output).split()
    for answer in answers:
        ref = normalise(answer).split()
        common = sum((Counter(pred) & Counter(ref)).values())
        if common:
            p, r = common / len(pred), common / len(ref)
            best = max(best, 2 * p * r / (p + r))
    return best


def _char_ngrams(text: str, n: int) -> Counter[str]:
    s = " ".join(text.split())
    return Counter(s[i:i + n] for i in range(len(s) - n + 1))


def chrf(output: str, reference: str, max_n: int = 6, beta: float = 2.0) -> float:
    """chrF (0..1): character n-gram precision and recall averaged over n = 1..max_n, combined with
    recall weighted beta times; whitespace is collapsed as sacrebleu's default does not, which only
    matters for text with runs of spaces."""
    if max_n < 1 or beta <= 0:
        raise ValueError(f"max_n {max_n!r} must be >= 1 and beta {beta!r} > 0")
    precisions, recalls = [], []
    for n in range(1, max_n + 1):
        hyp, ref = _char_ngrams(output, n), _char_ngrams(reference, n)
        if not hyp or not ref:
            continue
        common = sum((hyp & ref).values())
        precisions.append(common / sum(hyp.values()))
        recalls.append(common / sum(ref.values()))
    if not precisions:
        return 0.0
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    return 0.0 if p + r == 0 else (1 + beta**2) * p * r / (beta**2 * p + r)


def _same(value: Any, expected: Any) -> bool:
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        try:
            return float(str(value).strip()) == float(expected)
        except ValueError:
            return False
    return normalise(str(value)) == normalise(str(expected))


def field_accuracy(output: dict[str, Any] | None, expected: dict[str, Any]) -> float:
    """The share of the reference's fields the output gives with the same value (0 for no JSON)."""
    if not expected:
        raise ValueError("a reference with no fields cannot score anything")
    if not output:
        return 0.0
    return sum(f in output and _same(output[f], v) for f, v in expected.items()) / len(expected)


def accuracy(output: str | None, expected: str) -> float:
    return float(output is not None and output.lower() == expected.lower())


def _answers(item: dict[str, Any]) -> list[str]:
    return list(item.get("answers") or [item["answer"]])


# metric name -> score(parsed output, eval item)
METRICS: dict[str, Callable[[Any, dict[str, Any]], float]] = {
    "accuracy": lambda out, item: accuracy(out, item["answer"]),
    "contains": lambda out, item: contains(out or "", _answers(item)),
    "exact": lambda out, item: exact(out or "", _answers(item)),
    "token_f1": lambda out, item: token_f1(out or "", _answers(item)),
    "chrf": lambda out, item: chrf(out or "", item["answer"]),
    "field_accuracy": lambda out, item: field_accuracy(out, item["answer"]),
    "valid_json": lambda out, item: float(out is not None),
}
