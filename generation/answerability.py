"""Calibrated answerability: should this answer be given, or refused as "the passages do not say"?

The retrieval threshold refuses off-topic questions before the model runs. On-topic questions whose
answer is missing get passages from the right document, so their cosine looks like an answerable
question's. What differs is how well the question is covered by the line the answer was copied
from, and how sure the model was: a small logistic model over those features gives
`answerable_score` in [0, 1]; an answer scoring under the model's threshold is refused.

The model is fitted on SQuAD-derived questions from articles never used for evaluation
(tuning/answerability.py, `python -m bench.answerability`), and ships as a small JSON file with its
record (data, threshold and what it was chosen for).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .answer_types import STOPWORDS, head_phrase, type_mismatch, words_of
from .errors import ModelFileError
from .grounding import LINE, MARKER, Passage, stems
from .lines import first_piece, passage_lines
from .verifier import Verifier, pair_text

FEATURES = ("best_score", "question_coverage", "answer_line_coverage", "refusal_margin",
            "mean_logprob", "answer_words", "question_in_passages", "line_score", "line_margin",
            "line_semantic", "type_mismatch", "names_in_cited", "focus_in_cited",
            "line_verified", "best_verified")
VERIFIED = ("line_verified", "best_verified")  # need a Verifier (generation/verifier.py)
DEFAULT_MODEL = Path(__file__).with_name("answerability.json")

def _present(word: str, text: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", text) is not None


def names_in(question: str, text: str) -> float:
    """Share of the question's names and numbers (capitalised words after the first, words with
    digits) that occur in `text`; 1.0 for a question without any."""
    words = words_of(question)
    names = {w.lower() for i, w in enumerate(words)
             if (i > 0 and w[0].isupper()) or any(c.isdigit() for c in w)}
    names -= STOPWORDS
    if not names:
        return 1.0
    lower = text.lower()
    return sum(_present(n, lower) for n in names) / len(names)


def focus_in(question: str, text: str) -> float:
    """Share of the question's focus words (its head noun phrase) whose stem occurs in `text`;
    1.0 for a question without one."""
    _, focus = head_phrase(question)
    wanted = stems(" ".join(focus))
    return len(wanted & stems(text)) / len(wanted) if wanted else 1.0


def cited_text(answer: str, shown: Sequence[Passage]) -> str:
    """The text (with source names) of the passages the answer cites; all of them if none."""
    cited = {int(n) for m in MARKER.findall(answer) for n in m.split(",")}
    chosen = [p for p in shown if p.n in cited] or list(shown)
    return "\n".join(f"{p.source}\n{p.text}" for p in chosen)


def _coverage(wanted: set[str], line: str) -> float:
    return len(wanted & stems(line)) / len(wanted) if wanted else 0.0


def features(question: str, shown: Sequence[Passage], answer: str,
             stats: Mapping[str, float]) -> dict[str, float]:
    """The classifier's inputs for one answer over the passages the model was shown.

    `stats` are the decoder's observations (`refusal_margin`, `mean_logprob`) and, for line
    answers, the answer line's ranking (`line_score`, `line_margin`, `line_semantic`); missing ones
    count as 0 (for the decoder's, what a fully confident model would give).
    """
    wanted = stems(question)
    lines = [u.strip() for p in shown for u in LINE.split(p.text) if u.strip()]
    head = first_piece(answer)
    cited = cited_text(answer, shown)
    with_answer = [u for u in lines if head and head in u.lower()]
    return {
        "best_score": max((p.score for p in shown), default=0.0),
        "question_coverage": max((_coverage(wanted, u) for u in lines), default=0.0),
        "answer_line_coverage": max((_coverage(wanted, u) for u in with_answer), default=0.0),
        "refusal_margin": float(stats.get("refusal_margin", 0.0)),
        "mean_logprob": float(stats.get("mean_logprob", 0.0)),
        "answer_words": float(min(len(answer.split()), 80)),
        "question_in_passages": _coverage(wanted, " ".join(p.text for p in shown)),
        **{k: float(stats.get(k, 0.0)) for k in ("line_score", "line_margin", "line_semantic")},
        "type_mismatch": type_mismatch(question, answer),
        "names_in_cited": names_in(question, cited),
        "focus_in_cited": focus_in(question, cited),
    }


def verified(question: str, shown: Sequence[Passage], answer: str,
             verifier: Verifier) -> dict[str, float]:
    """The verifier's features: how surely the answer's line answers the question
    (`line_verified`, read with the cited passage's heading), and the best any shown line does
    (`best_verified`)."""
    pairs: list[str] = []
    headings: dict[int, str] = {}
    for p in shown:
        headings[p.n], lines = passage_lines(p.text)
        pairs += [pair_text(headings[p.n], line) for line in lines]
    cited = {int(n) for m in MARKER.findall(answer) for n in m.split(",")}
    heading = next((headings[p.n] for p in shown if p.n in cited), "")
    said = MARKER.sub("", answer).strip().strip("…").strip()
    scores = verifier.score(question, [pair_text(heading, said)] + pairs)
    return {"line_verified": scores[0], "best_verified": max(scores)}


@dataclass(frozen=True)
class AnswerabilityModel:
    """sigmoid(bias + sum(weight * (feature - mean) / scale)); refuse below `threshold`."""

    weights: dict[str, float]
    bias: float
    mean: dict[str, float]
    scale: dict[str, float]
    threshold: float
    record: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(FEATURES))
        if unknown or not self.weights:
            raise ModelFileError(f"answerability model has unknown features {unknown} (known: "
                                 f"{', '.join(FEATURES)}); refit it")
        missing = [f for f in self.weights if f not in self.mean or f not in self.scale]
        if missing:
            raise ModelFileError(f"answerability model lacks a mean or scale for {missing}; refit it")
        if not 0.0 <= self.threshold <= 1.0:
            raise ModelFileError(f"threshold {self.threshold!r} must be in [0, 1]")
        if any(self.scale[f] <= 0 for f in self.weights):
            raise ModelFileError("every feature scale must be positive")

    def score(self, feats: Mapping[str, float]) -> float:
        z = self.bias + sum(w * (feats[f] - self.mean[f]) / self.scale[f]
                            for f, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.weights)

    @property
    def needs_verifier(self) -> bool:
        return any(f in VERIFIED for f in self.weights)

    def fits(self, adapter: str, answer_style: str = "span") -> bool:
        """Whether this model was fitted on answers of `adapter` ("base" for none) in this answer
        style; a model with no record of the adapter fits any, one with no style fits "span"."""
        settings = self.record.get("run_settings", {})
        fitted = settings.get("adapter", adapter)
        style = settings.get("answer_style") or "span"
        return (fitted or "base") == adapter and style == answer_style

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL) -> AnswerabilityModel:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise ModelFileError(f"cannot read the answerability model {path}: {exc}") from exc
