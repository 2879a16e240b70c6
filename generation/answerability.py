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

# What a question asks for, by the answer-type classes of factoid QA (Li & Roth's NUM, DATE and
# HUM:name): the head noun after the wh-word, or the wh-phrase itself.
_QUANTITY = frozenset(
    "number numbers amount count total cost costs price prices fee fees fare charge charges rate "
    "rates percentage percent proportion share salary wage pay income revenue budget population "
    "capacity size area length width height depth distance weight mass temperature speed age "
    "duration volume".split())
_MEASURES = frozenset("long far old big large tall high deep often fast wide heavy".split())
_DATE = frozenset("year years date dates day month decade century time".split())
_GENERIC = frozenset("type types kind kinds sort form forms part parts name names group".split())
_AUX = frozenset("is are was were will would does do did has have had can could should be the a "
                 "an 's".split())
_END = frozenset("of for in on at to by from with does do did is was are were be been that "
                 "which who when where whose has have had can could will would should "
                 "than as about after before during".split())
_TOKEN = re.compile(r"[A-Za-z0-9][\w\'/.-]*[\w]|[A-Za-z0-9]")
_NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten eleven twelve thirteen "
                          "fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty "
                          "forty fifty sixty seventy eighty ninety hundred thousand million "
                          "billion dozen half single double twice once".split())
_DATE_WORDS = frozenset("january february march april may june july august september october "
                        "november december monday tuesday wednesday thursday friday saturday "
                        "sunday spring summer autumn fall winter century centuries decade "
                        "bc ad bce ce".split())


def _words(text: str) -> list[str]:
    return [w[:-2] if w.lower().endswith("'s") else w for w in _TOKEN.findall(text)]


def head_phrase(question: str) -> tuple[str | None, list[str]]:
    """(expected answer type, focus words) of a question.

    The type is "number", "date" or "name" where the wh-phrase says so ("how many", "when",
    "who", "what year", "what is the price of ..."), else None. The focus is the noun phrase the
    question asks about ("interest rate" in "What interest rate does ..."), with generic heads
    ("type of", "name of") replaced by their complement.
    """
    words = [w.lower() for w in _words(question)]
    if not words:
        return None, []
    wh = next((i for i, w in enumerate(words) if w in ("what", "which", "how", "who", "whom",
                                                         "whose", "when")), None)
    if wh is None:
        return None, []
    first = words[wh]
    rest = words[wh + 1:]
    if first in ("who", "whom", "whose"):
        return "name", []
    if first == "when":
        return "date", []
    kind: str | None = None
    if first == "how":
        if rest[:1] not in (["many"], ["much"]):  # how long/far/old ...: a measure, no focus noun
            return ("number" if rest[:1] and rest[0] in _MEASURES else None), []
        kind, rest = "number", rest[1:]  # "how much does ..." has no focus: stop at the verb
    else:
        while rest and rest[0] in _AUX:
            rest = rest[1:]
    phrase: list[str] = []
    for w in rest:
        if w in _END or w in _AUX or len(phrase) == 3:
            break
        phrase.append(w)
    if kind is None and phrase:
        head = phrase[-1]
        kind = ("number" if head in _QUANTITY else "date" if head in _DATE
                else "name" if head in ("name", "names", "called") else None)
    if phrase and phrase[-1] in _GENERIC:
        after = rest[len(phrase):]
        if after[:1] == ["of"]:
            phrase = []
            for w in after[1:]:
                if w in _END or w in _AUX:
                    if phrase:
                        break
                    continue
                phrase.append(w)
        else:
            phrase = phrase[:-1]
    return kind, [w for w in phrase if w not in _AUX]


def type_mismatch(question: str, answer: str) -> float:
    """1.0 when the question asks for a number, a date or a name and the answer holds none."""
    kind, _ = head_phrase(question)
    if kind is None:
        return 0.0
    text = MARKER.sub(" ", answer)
    words = _words(text)
    lower = [w.lower() for w in words]
    if kind == "number":
        found = any(any(c.isdigit() for c in w) for w in words) \
            or any(part in _NUMBER_WORDS for w in lower for part in w.split("-"))
    elif kind == "date":
        found = any(re.fullmatch(r"\d{3,4}s?|\d{1,2}(st|nd|rd|th)|\d+[/.-]\d+([/.-]\d+)?", w)
                    for w in lower) or any(w in _DATE_WORDS for w in lower)
    else:
        asked = {w.lower() for w in _words(question)}
        found = any(w[0].isupper() and w.lower() not in asked and w.lower() not in _STOPWORDS
                    for w in words[1:])
    return 0.0 if found else 1.0


_STOPWORDS = frozenset("the a an this that these those it its in on at of for and or but if "
                       "when where while with by from as".split())


def _present(word: str, text: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", text) is not None


def names_in(question: str, text: str) -> float:
    """Share of the question's names and numbers (capitalised words after the first, words with
    digits) that occur in `text`; 1.0 for a question without any."""
    words = _words(question)
    names = {w.lower() for i, w in enumerate(words)
             if (i > 0 and w[0].isupper()) or any(c.isdigit() for c in w)}
    names -= _STOPWORDS
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
