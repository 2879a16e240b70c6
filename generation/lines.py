"""Answer lines: give the whole sentence or table row that holds the answer, not a bare span.

A small model reading a few passages often copies a span from the right line but the wrong words
in it ("Spectre" for "What did Spectre cost?", whose line says "$245 million"). The line is the
unit it gets right far more often, and a quoted line cannot misstate a figure. So the answer is
the line that best combines:

- `lexical`: the share of the question's content words (stemmed) that the line holds,
- `heading`: the share it lacks that the passage's heading holds (a table row under "Tariff
  2025/26" answers a question about the 2025/26 tariff),
- `semantic`: the embedder's cosine between question and line,
- `model`: 1 where the model's own copied answer lies in the line,
- `retrieval`: the passage's retrieval score,
- `superseded`: 1 where the line's document is an older version of another shown document (the
  same name but for an earlier year: `tariff_2024.md` beside `tariff_2025.md`) and the question
  names none of the older one's years, so that the current figure wins a tie with last year's,
- `kind`: 1 where the line holds the kind of thing the question asks for (a number for "how
  many", a date or time for "when", a name for "who"; generation/answer_types.py), 0 where it
  does not or the question asks for no particular kind.

Table rows are shown with their column headers ("Detached house: Annual charge £482.00"), so a row
read alone still says what its figures are. The weights were chosen on the SQuAD calib split
(bench/results/lines.md), never on kb_dev or the eval split. Pure functions: the embedder is
passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .answer_types import holds_kind
from .grounding import LINE, Passage, stems

Embed = Callable[[list[str]], Any]  # texts -> rows of L2-normalised vectors
MAX_WORDS = 60  # a longer line is cut to this many words around the model's answer
_SEPARATOR = re.compile(r"^\|?\s*:?-{2,}")
_CUT = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]|;|,\s|\band\b")


@dataclass(frozen=True)
class LineWeights:
    lexical: float = 2.0
    heading: float = 0.5
    semantic: float = 0.5
    model: float = 0.25
    retrieval: float = 1.0
    kind: float = 0.25
    superseded: float = 0.5  # subtracted


@dataclass(frozen=True)
class AnswerLine:
    n: int  # the passage's number
    text: str
    score: float
    coverage: float  # share of the question's content words in the line
    semantic: float


def _is_heading(unit: str) -> bool:
    if unit.startswith("|") or len(unit.split()) > 20:
        return False
    return " > " in unit or not unit.rstrip("*").endswith((".", "!", "?", '"'))


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def passage_lines(text: str) -> tuple[str, list[str]]:
    """A passage's heading ('' if it has none) and its answer lines: sentences and list items of
    three words or more, and table rows with their column headers."""
    units = [u.strip() for u in LINE.split(text) if u.strip()]
    heading = units[0] if len(units) > 1 and _is_heading(units[0]) else ""
    lines: list[str] = []
    header: list[str] | None = None
    for unit in units[1:] if heading else units:
        if _SEPARATOR.match(unit):
            continue
        if unit.startswith("|"):
            cells = _cells(unit)
            if header is None:
                header = cells
            elif len(header) == len(cells) and len(cells) > 1:
                lines.append(cells[0] + ": " + ", ".join(
                    f"{h} {v}" for h, v in zip(header[1:], cells[1:], strict=True)))
            else:
                lines.append(" | ".join(cells))
            continue
        header = None
        if len(unit.split()) > 2:
            lines.append(unit)
    return heading, lines


_YEAR = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")


def superseded(question: str, passages: Sequence[Passage]) -> set[int]:
    """Numbers of the passages whose document is an older version of another shown one: the same
    source name once its years are taken out, with a latest year before the other's. A document
    whose years the question names is never superseded ("the 2024 tariff")."""
    asked = set(_YEAR.findall(question))
    latest: dict[str, int] = {}
    for p in passages:
        years = [int(y) for y in _YEAR.findall(p.source)]
        if years:
            key = _YEAR.sub("#", p.source.lower())
            latest[key] = max(latest.get(key, 0), max(years))
    older = set()
    for p in passages:
        years = _YEAR.findall(p.source)
        if years and not asked & set(years) \
                and max(map(int, years)) < latest[_YEAR.sub("#", p.source.lower())]:
            older.add(p.n)
    return older


def first_piece(answer: str) -> str:
    """The first copied piece of an answer: before its first marker, comma, semicolon or "and"."""
    return next((part.strip(" .").lower() for part in _CUT.split(answer) if part.strip(" .")), "")


def rank_lines(question: str, passages: Sequence[Passage], model_answer: str = "",
               embed: Embed | None = None,
               weights: LineWeights = LineWeights()) -> list[AnswerLine]:
    """Every answer line of `passages`, best first."""
    wanted = stems(question)
    found: list[tuple[Passage, str, str]] = []
    for p in passages:
        heading, lines = passage_lines(p.text)
        found += [(p, heading, line) for line in lines]
    if not found:
        return []
    semantic = [0.0] * len(found)
    if embed is not None and weights.semantic:
        vectors = embed([question] + [line for _, _, line in found])
        semantic = [float(v @ vectors[0]) for v in vectors[1:]]
    copied = " ".join(model_answer.lower().split())
    older = superseded(question, passages) if weights.superseded else set()
    ranked = []
    for (p, heading, line), sem in zip(found, semantic, strict=True):
        have = stems(line)
        coverage = len(wanted & have) / len(wanted) if wanted else 0.0
        context = len((wanted - have) & stems(heading)) / len(wanted) if wanted else 0.0
        has_model = bool(copied) and copied in " ".join(line.lower().split())
        kind = bool(weights.kind) and holds_kind(question, line) is True
        score = (weights.lexical * coverage + weights.heading * context + weights.semantic * sem
                 + weights.model * has_model + weights.retrieval * p.score + weights.kind * kind
                 - weights.superseded * (p.n in older))
        ranked.append(AnswerLine(n=p.n, text=line, score=score, coverage=coverage, semantic=sem))
    return sorted(ranked, key=lambda a: -a.score)


def shorten(line: str, model_answer: str = "", max_words: int = MAX_WORDS) -> str:
    """`line` cut to `max_words` words, kept around the model's answer where the line holds it."""
    words = line.split()
    if len(words) <= max_words:
        return line
    start = 0
    head = model_answer.lower().split()[:1]
    if head:
        at = next((i for i, w in enumerate(words) if head[0] in w.lower()), None)
        if at is not None:
            start = max(0, min(at - max_words // 3, len(words) - max_words))
    cut = " ".join(words[start:start + max_words])
    return ("…" if start else "") + cut + "…"
