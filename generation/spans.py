"""Span-grounded decoding, as a pure grammar: which answer texts may a constrained model write?

An answer may only be made of pieces copied from the passages it was shown (compared without case
and with runs of whitespace collapsed), citation markers naming a shown passage (``[2]``,
``[1, 3]``), light glue between pieces (``and``, commas, semicolons, a full stop, new lines), or
the refusal sentence. So the model cannot misread a number or invent a name: it can only choose
*which* text to copy, and two-fact questions get two pieces joined by glue.

`SpanConstraint.allows(prefix)` answers for every prefix as the answer is written (a prefix of a
copied piece is itself a copied piece), so a decoder can ask it token by token; `finished` says
when nothing but the end may follow. The decoder itself (a Hugging Face logits processor) lives in
generation/constrained.py; nothing here loads a model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .grounding import REFUSAL

_WS = re.compile(r"\s+")
_COMPLETE_MARKER = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")
_PARTIAL_MARKER = re.compile(r"\[\s*(?:\d+\s*,\s*)*\d*\s*$")
# glue between copied pieces: "and", ";" or a comma followed by a space or the end (so "1,200"
# stays one piece); a full stop may only end the answer
_GLUE = re.compile(r"\s*(?:;|,(?=\s|$)|\band\b)\s*", re.IGNORECASE)
_END = re.compile(r"\s*\.\s*$")
MAX_PIECES = 4
_SEPARATOR = "\x00"  # between passages, so no piece spans two of them


def normalise(text: str) -> str:
    """Lower case, curly quotes made straight, whitespace runs collapsed to one space."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    return _WS.sub(" ", text.replace("\u201d", '"')).lower()


@dataclass
class DecodeTrace:
    """What a constrained decoder observed, for answerability: filled in by the decoder."""

    refusal_start_logprob: float | None = field(default=None, metadata={
        "help": "log-probability of the refusal's first token as the answer's first token, "
                "before the constraint"})
    best_start_logprob: float | None = field(default=None, metadata={
        "help": "log-probability of the most likely first token, before the constraint"})
    token_logprobs: list[float] = field(default_factory=list, metadata={
        "help": "unconstrained log-probability of each token the decoder chose"})
    forced: int = field(default=0, metadata={
        "help": "steps where none of the model's likely tokens was allowed"})

    @property
    def mean_logprob(self) -> float | None:
        lps = self.token_logprobs
        return sum(lps) / len(lps) if lps else None

    @property
    def refusal_margin(self) -> float | None:
        """How far the refusal's first token is from the model's favourite first token (<= 0)."""
        if self.refusal_start_logprob is None or self.best_start_logprob is None:
            return None
        return self.refusal_start_logprob - self.best_start_logprob


class SpanConstraint:
    """The answers that copy from `sources` (the passages as shown, in order, numbered 1..n)."""

    def __init__(self, sources: Sequence[str], refusal: str | None = REFUSAL,
                 enforce: bool = True) -> None:
        """`refusal=None` leaves the model no way out but copying: something else (the
        answerability classifier, which sees how much the model wanted to refuse) decides.
        `enforce=False` only observes (the decoder fills `trace`, for answerability)."""
        if not sources:
            raise ValueError("span-grounded decoding needs at least one passage to copy from")
        self.n_passages = len(sources)
        self.corpus = _SEPARATOR + _SEPARATOR.join(normalise(s) for s in sources) + _SEPARATOR
        self.allow_refusal = refusal is not None
        # the refusal's text is still needed to measure how much the model wanted to refuse
        self.refusal = normalise(refusal if refusal is not None else REFUSAL).strip()
        self.enforce = enforce
        self.trace = DecodeTrace()

    def allows(self, text: str) -> bool:
        """True when `text` is a prefix of an answer this constraint accepts."""
        norm = normalise(text).lstrip()
        if not norm:
            return True
        if self.allow_refusal and self.refusal.startswith(norm.rstrip()):
            return True
        body = _PARTIAL_MARKER.sub("", norm, count=1)
        if body != norm and not self._partial_marker_ok(norm[len(body):]):
            return False
        pieces: list[str] = []
        last = 0
        for match in _COMPLETE_MARKER.finditer(body):
            if not self._numbers_ok(match.group(1)):
                return False
            pieces.append(body[last:match.start()])
            last = match.end()
        pieces.append(_END.sub("", body[last:]))
        parts = [part.strip() for piece in pieces for part in _GLUE.split(piece)]
        parts = [part for part in parts if part]
        return len(parts) <= MAX_PIECES and all(self._copied(part) for part in parts)

    def finished(self, text: str) -> bool:
        """True when only the end may follow: the whole refusal sentence has been written."""
        return self.allow_refusal and normalise(text).strip() == self.refusal

    def may_end(self, text: str) -> bool:
        """True when the answer may stop here: a whole refusal, or copied text with no open marker
        (and not half a refusal)."""
        if self.finished(text):
            return True
        norm = normalise(text).strip()
        if not norm or _PARTIAL_MARKER.search(norm):
            return False
        if self.allow_refusal and self.refusal.startswith(norm):
            return False
        return self.allows(text)

    def _copied(self, part: str) -> bool:
        """`part` occurs in a passage, starting at a word boundary there."""
        at = self.corpus.find(part)
        while at >= 0:
            if not self.corpus[at - 1].isalnum() or not part[0].isalnum():
                return True
            at = self.corpus.find(part, at + 1)
        return False

    def _numbers_ok(self, numbers: str) -> bool:
        return all(1 <= int(x) <= self.n_passages for x in numbers.split(","))

    def _partial_marker_ok(self, marker: str) -> bool:
        digits = [d for d in re.findall(r"\d+", marker)]
        return all(not d.startswith("0") and int(d) <= self.n_passages for d in digits)
