"""Answer evaluation on a golden set in the kb_dev format.

Each question has accepted answer strings, a `match` rule (any | all | none), whether it is
answerable, and the gold document. Matching is case-insensitive after collapsing whitespace, with no
other normalisation, so numbers, units and currency must appear as in the documents.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from .errors import InvalidRequest
from .rag import Answer

MATCH_RULES = ("any", "all", "none")


@dataclass(frozen=True)
class GoldQuestion:
    id: str
    question: str
    answers: tuple[str, ...]
    match: str
    answerable: bool
    doc: str | None = None
    type: str = ""


def load_questions(path: Path) -> list[GoldQuestion]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                out.append(parse_question(json.loads(line), f"{path}:{n}"))
    return out


def parse_question(rec: dict[str, Any], where: str) -> GoldQuestion:
    if not isinstance(rec, dict):
        raise InvalidRequest(f"{where}: a question must be a JSON object")
    for key in ("question", "answerable"):
        if key not in rec:
            raise InvalidRequest(f"{where}: missing field {key!r}")
    match = rec.get("match", "any" if rec["answerable"] else "none")
    if match not in MATCH_RULES:
        raise InvalidRequest(f"{where}: match {match!r} must be one of {MATCH_RULES}")
    raw = rec.get("answers") or []
    if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
        raise InvalidRequest(f"{where}: 'answers' must be a list of strings")
    if not isinstance(rec["question"], str) or not rec["question"].strip():
        raise InvalidRequest(f"{where}: 'question' must be a non-empty string")
    answers = tuple(raw)
    if rec["answerable"] and not answers:
        raise InvalidRequest(f"{where}: an answerable question needs accepted 'answers'")
    return GoldQuestion(id=str(rec.get("id", where)), question=rec["question"], answers=answers,
                        match=match, answerable=bool(rec["answerable"]), doc=rec.get("doc"),
                        type=rec.get("type", ""))


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def answer_matches(answer: str, gold: GoldQuestion) -> bool:
    text = _norm(answer)
    found = [_norm(a) in text for a in gold.answers]
    return all(found) if gold.match == "all" else any(found)


def _source_matches(source: str, doc: str) -> bool:
    return source == doc or source.endswith("/" + doc)


@dataclass
class QuestionResult:
    id: str
    answerable: bool
    hit_at_k: bool
    correct: bool
    refused: bool
    cited_gold: bool
    grounded: bool
    latency_s: float
    answer: str


def score_one(gold: GoldQuestion, answer: Answer, latency_s: float) -> QuestionResult:
    sources = [p.source for p in answer.passages]
    hit = gold.doc is not None and any(_source_matches(s, gold.doc) for s in sources)
    cited = gold.doc is not None and any(_source_matches(c.source, gold.doc)
                                         for c in answer.citations)
    correct = answer.refused if not gold.answerable else (
        not answer.refused and answer_matches(answer.answer, gold))
    return QuestionResult(id=gold.id, answerable=gold.answerable, hit_at_k=hit, correct=correct,
                          refused=answer.refused, cited_gold=cited, grounded=answer.grounded,
                          latency_s=latency_s, answer=answer.answer)


def summarise(results: list[QuestionResult]) -> dict[str, float]:
    ans = [r for r in results if r.answerable]
    unans = [r for r in results if not r.answerable]
    given = [r for r in ans if not r.refused]

    def rate(rows: list[QuestionResult], key: Callable[[QuestionResult], bool]) -> float:
        return round(fmean(key(r) for r in rows), 4) if rows else 0.0

    return {
        "questions": len(results), "answerable": len(ans), "unanswerable": len(unans),
        "hit_at_k": rate(ans, lambda r: r.hit_at_k),
        "answer_accuracy": rate(ans, lambda r: r.correct),
        "refusal_rate": rate(unans, lambda r: r.refused),
        "false_refusal_rate": rate(ans, lambda r: r.refused),
        "citation_precision": rate(given, lambda r: r.cited_gold),
        "grounded_rate": rate(given, lambda r: r.grounded),
        "overall_accuracy": rate(results, lambda r: r.correct),
        "latency_p50_s": round(sorted(r.latency_s for r in results)[len(results) // 2], 3)
        if results else 0.0,
    }


def evaluate(questions: Iterable[GoldQuestion],
             ask: Callable[[str], Answer]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    results = []
    for gold in questions:
        start = time.perf_counter()
        answer = ask(gold.question)
        results.append(score_one(gold, answer, time.perf_counter() - start))
    return summarise(results), [asdict(r) for r in results]


def calibrate_threshold(answerable: list[float], unanswerable: list[float],
                        max_false_refusal: float = 0.05) -> tuple[float, dict[str, float]]:
    """The retrieval-score threshold that refuses the most unanswerable questions while refusing
    at most `max_false_refusal` of the answerable ones (scores are each question's best passage)."""
    if not answerable or not unanswerable:
        raise InvalidRequest("calibration needs both answerable and unanswerable questions")
    best = (min(answerable) - 1e-6, 0.0, 0.0)
    for t in sorted(set(answerable) | set(unanswerable)):
        false_refusal = fmean(s < t for s in answerable)
        refusal = fmean(s < t for s in unanswerable)
        if false_refusal <= max_false_refusal and refusal >= best[1]:
            best = (t, refusal, false_refusal)
    threshold, refusal, false_refusal = best
    return round(threshold, 4), {"refusal_rate": round(refusal, 4),
                                 "false_refusal_rate": round(false_refusal, 4)}
