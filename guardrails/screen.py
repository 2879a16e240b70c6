"""Screens: is a text offensive? One small Protocol, a word list and a linear probe behind it.

A screen scores each text in [0, 1] and flags it at its threshold. `WordListScreen` flags a text
holding a listed word (the MIT-licensed list of the `better-profanity` package by default);
`ProbeScreen` reads a linear probe (`tuning.probe.Probe`) on the embedder's vectors and, given a
word list, also names the listed words it finds, so redaction can mask them. `check_text` (a text
and each of its sentences) and `redact` are built on `check_batch` alone, so they serve every
screen.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from retrieval.embedder import Embedder
from tuning.probe import Probe

from .errors import ScreenError

MASK = "****"
REDACTED = "[redacted]"
POSITIVE_LABELS = ("offensive", "toxic", "1", "true", "yes")
SENTENCE = re.compile(r"[^.!?\n]+[.!?]*\s*|\n+")


@dataclass(frozen=True)
class Verdict:
    """What a screen says of one text: `score` in [0, 1], `flagged` when it reaches the
    screen's threshold, and the listed words found in it (for redaction and for people)."""

    flagged: bool
    score: float
    terms: tuple[str, ...] = ()


@runtime_checkable
class Screen(Protocol):
    """Scores texts as offensive; `name` says which screen (and model) spoke."""

    name: str
    threshold: float

    def check_batch(self, texts: list[str]) -> list[Verdict]: ...


def check(screen: Screen, text: str) -> Verdict:
    return screen.check_batch([text])[0]


def sentences(text: str) -> list[str]:
    """`text` cut after each ., ! or ? and at line breaks; joined back they give `text`."""
    parts = SENTENCE.findall(text)
    return parts if "".join(parts) == text else [text]


def check_text(screen: Screen, text: str) -> Verdict:
    """The verdict on `text` and on each of its sentences, one batch: a single offensive sentence
    in a long, otherwise clean answer is flagged although the whole text scores low."""
    parts = [p for p in sentences(text) if p.strip()]
    verdicts = screen.check_batch([text] + (parts if len(parts) > 1 else []))
    worst = max(verdicts, key=lambda v: (v.flagged, v.score))
    return Verdict(flagged=worst.flagged, score=worst.score, terms=verdicts[0].terms)


def redact(screen: Screen, text: str) -> tuple[str, Verdict]:
    """`text` with each flagged sentence's listed words masked, and a sentence still flagged
    after that replaced by [redacted]; with `check_text`'s verdict on the original."""
    whole = check_text(screen, text)
    if not whole.flagged:
        return text, whole
    parts = sentences(text)
    verdicts = screen.check_batch(parts)
    masked = [mask_terms(p, v.terms) if v.flagged else p for p, v in zip(parts, verdicts, strict=True)]
    changed = [i for i, (p, m) in enumerate(zip(parts, masked, strict=True)) if p != m]
    again = dict(zip(changed, screen.check_batch([masked[i] for i in changed]), strict=True)) \
        if changed else {}
    out = []
    for i, (part, verdict) in enumerate(zip(parts, verdicts, strict=True)):
        if verdict.flagged and (i not in again or again[i].flagged):
            out.append(REDACTED + _trailing_space(part))
        else:
            out.append(masked[i])
    return "".join(out), whole


def _trailing_space(part: str) -> str:
    return part[len(part.rstrip()):]


def mask_terms(text: str, terms: Iterable[str]) -> str:
    for term in sorted(set(terms), key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(term)}(?!\w)", MASK, text, flags=re.IGNORECASE)
    return text


def better_profanity_words() -> list[str]:
    """The word list of the `better-profanity` package (MIT licence), read from the installed
    package; multi-word entries included."""
    try:
        root = importlib.resources.files("better_profanity")
    except ModuleNotFoundError as exc:
        raise ScreenError("the word list comes from better-profanity: pip install "
                          "better-profanity") from exc
    text = root.joinpath("profanity_wordlist.txt").read_text(encoding="utf-8")
    return [w.strip() for w in text.splitlines() if w.strip()]


class WordListScreen:
    """Flags a text that holds any listed word or phrase as a whole word, in any case."""

    def __init__(self, words: Iterable[str], name: str = "wordlist") -> None:
        listed = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
        if not listed:
            raise ScreenError("a word-list screen needs at least one word")
        self.name = name
        self.threshold = 0.5
        self.size = len(listed)
        self._pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(w) for w in listed) + r")(?!\w)",
                                   re.IGNORECASE)

    def terms(self, text: str) -> tuple[str, ...]:
        found = dict.fromkeys(m.group(0) for m in self._pattern.finditer(text))
        return tuple(found)

    def check_batch(self, texts: list[str]) -> list[Verdict]:
        out = []
        for text in texts:
            terms = self.terms(text)
            out.append(Verdict(flagged=bool(terms), score=1.0 if terms else 0.0, terms=terms))
        return out


def positive_index(labels: tuple[str, ...]) -> int:
    """Which of a probe's labels means offensive: one named so, else the second of two."""
    lowered = [label.lower() for label in labels]
    for name in POSITIVE_LABELS:
        if name in lowered:
            return lowered.index(name)
    if len(labels) == 2:
        return 1
    raise ScreenError(f"cannot tell which of the labels {list(labels)} means offensive; name one "
                      f"of them {' or '.join(POSITIVE_LABELS)}")


class ProbeScreen:
    """A linear probe's probability of the offensive label, flagged at `threshold`. `words`
    only names listed words in the verdict (for redaction); it does not change the score."""

    def __init__(self, probe: Probe, embedder: Embedder, threshold: float = 0.5,
                 words: WordListScreen | None = None, name: str = "probe") -> None:
        if not 0.0 < threshold <= 1.0:
            raise ScreenError(f"threshold {threshold!r} must be in (0, 1]")
        probe.check_embedder(embedder)
        self.probe = probe
        self.embedder = embedder
        self.threshold = threshold
        self.words = words
        self.name = name
        self._positive = positive_index(probe.labels)

    def scores(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        return self.probe.probabilities(self.embedder.embed_batch(list(texts)))[:, self._positive]

    def check_batch(self, texts: list[str]) -> list[Verdict]:
        return [Verdict(flagged=bool(s >= self.threshold), score=round(float(s), 4),
                        terms=self.words.terms(t) if self.words is not None else ())
                for t, s in zip(texts, self.scores(texts), strict=True)]


class AnyScreen:
    """Flags a text any of `screens` flags; the score is the highest, the terms all found."""

    def __init__(self, screens: Sequence[Screen]) -> None:
        if not screens:
            raise ScreenError("AnyScreen needs at least one screen")
        self.screens = list(screens)
        self.name = "+".join(s.name for s in self.screens)
        self.threshold = self.screens[0].threshold

    def check_batch(self, texts: list[str]) -> list[Verdict]:
        each = [s.check_batch(texts) for s in self.screens]
        return [Verdict(flagged=any(v.flagged for v in vs), score=max(v.score for v in vs),
                        terms=tuple(dict.fromkeys(t for v in vs for t in v.terms)))
                for vs in zip(*each, strict=True)]
