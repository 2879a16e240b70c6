"""What a question is restricted to, and answers that answer another question.

A near-miss (an on-topic question whose answer is missing) finds a line that covers most of its
words: the same figure for another year, the desks of an office when its staff were asked for, a
plan the knowledge base never mentions. Lexical features and the classifier cannot tell those from
an answer; three checks can, and the answerability check refuses what they catch:

- the period: a question that names a year, a financial year ("2024/25", "FY2024") or a decade
  ("the 1990s") asks about that period only; when the passages shown from the cited document
  (their text, section headings and the source's name) name no part of it, the answer is about
  another period. On SQuAD train, 96 % of
  the answerable questions that name a year have it in their own paragraph; names and codes with
  digits ("R1", "H2") are missing from it far more often (15 %) and are not checked;
- what the answer holds (generation/answer_types.py): the kind of thing asked (a reason, a
  telephone number, an amount of money ...) and, for "how many", the thing counted;
- names (`names_asked`): a capitalised word of the question that no chunk of the collection
  holds, even misspelt (`Collection.unknown_words`), is refused before the model runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .answer_types import STOPWORDS, missing_counted, missing_kind, words_of
from .grounding import Passage

# a year 1500-2099, then "s" (a decade), or a second year after "/", "-", "–" or " to " (a
# financial year "2024/25" or a range "1864-1885"); FY2024 / FY24 is a financial year
_PERIOD = re.compile(
    r"(?<![\d,.£$€/])(?:FY\s?)?(1[5-9]\d\d|20\d\d)(?:(s)\b|\s*(?:[/–-]|\bto\b)\s*(\d{4}|\d{2})\b)?"
    r"(?![\d,]|\.\d)", re.IGNORECASE)
_SHORT_FY = re.compile(r"\bFY\s?(\d{2})\b", re.IGNORECASE)
_MAX_RANGE = 60


@dataclass(frozen=True)
class Period:
    """Years `start`..`end`; `pair` for a financial year written as two years ("2024/25")."""

    start: int
    end: int
    text: str
    pair: bool = False

    @property
    def years(self) -> range:
        return range(self.start, self.end + 1)


def periods(text: str) -> list[Period]:
    """The years, financial years, ranges and decades named in `text`."""
    out = []
    for m in _PERIOD.finditer(text):
        start = int(m.group(1))
        if m.group(2):  # a decade
            out.append(Period(start - start % 10, start - start % 10 + 9, m.group(0)))
            continue
        second = m.group(3)
        if second is None:
            out.append(Period(start, start, m.group(0)))
            continue
        end = int(second) if len(second) == 4 else start // 100 * 100 + int(second)
        if end == start + 1:
            out.append(Period(start, end, m.group(0), pair=True))
        elif start < end <= start + _MAX_RANGE:
            out.append(Period(start, end, m.group(0)))
        else:  # "2024-03" (a month) or a number after a year: the year alone
            out.append(Period(start, start, m.group(1)))
    out += [Period(2000 + int(y), 2000 + int(y), m.group(0))
            for m in _SHORT_FY.finditer(text) for y in [m.group(1)]]
    return out


def _spoken_of(asked: Period, named: list[Period]) -> bool:
    if asked.pair:  # 2024/25: that financial year, or its first calendar year on its own
        return any((p.start, p.end) == (asked.start, asked.end) or
                   (not p.pair and p.start <= asked.start <= p.end) for p in named)
    years = set(asked.years)
    return any(years & set(p.years) for p in named)


def missing_period(question: str, text: str) -> str | None:
    """The period `question` names (as written) when `text` speaks of no part of it, else None."""
    named = periods(text)
    for asked in periods(question):
        if not _spoken_of(asked, named):
            return asked.text
    return None


def context_of(passages: Sequence[Passage]) -> str:
    """What a passage says of its period: its source's name, its section heading and its text."""
    return "\n".join(f"{p.source}\n{p.metadata.get('section', '')}\n{p.text}" for p in passages)


def names_asked(question: str) -> list[str]:
    """The names the question asks about: its capitalised words after the first ("Enterprise"
    in "How much does the Enterprise plan cost?", "P4"), but not acronyms, which documents may
    spell out or write with dots; none for a question written in title case or capitals, where
    capitals mark no names.

    A name that no passage of the collection holds (`Collection.unknown_words`) is something the
    knowledge base never mentions: the answerability check refuses before the model runs."""
    words = words_of(question)[1:]
    if any(w[0].isupper() for w in words if w.lower() in _SMALL):
        return []
    return [w for w in words if len(w) > 1 and w[0].isupper() and w.lower() not in STOPWORDS
            and not (w.isalpha() and w.isupper())]  # an acronym may be spelt out ("U.S.", "CFO")


_SMALL = STOPWORDS | frozenset("is are was were does do did has have the of to what how which "
                               "who".split())


def mismatch(question: str, answer: str, context: str) -> str | None:
    """Why `answer` (quoting `context`, its cited passages) answers another question than
    `question`, or None: it lacks the kind of thing asked (a reason, a telephone number, an
    amount of money ...), it counts something else than "how many" asks, or its passage is about
    another period."""
    kind = missing_kind(question, answer)
    if kind:
        return f"the question asks for {kind} and the answer holds none"
    things = missing_counted(question, answer)
    if things:
        return f"the question asks how many {things} and the answer counts none"
    period = missing_period(question, context)
    if period:
        return f"the question asks about {period} and the cited passage does not mention it"
    return None
