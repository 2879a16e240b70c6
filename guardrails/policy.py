"""What happens to an offensive question or answer: flag it, refuse it, or redact it.

`Guard.stream` wraps an answer's stream (text pieces, then, for grounded answers, the final
`Answer`) and ends it with a `Screening`, the verdicts on the question and on the answer. With
`flag` the pieces pass as they come; with `refuse` and `redact` they are held back until the whole
answer is screened and then sent as one piece, since a piece already sent cannot be taken back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from generation.rag import Answer

from .errors import ScreenError
from .screen import Screen, Verdict, check_text, redact

ACTIONS = ("off", "flag", "refuse", "redact")
QUESTION_REFUSAL = "I won't answer that: the question was screened as offensive."
ANSWER_REFUSAL = "The answer was withheld: it was screened as offensive."

Item = str | Answer


@dataclass(frozen=True)
class Screening:
    """The verdicts on a question and its answer (None: not screened, e.g. a refusal), the
    action in force, and whether the text shown differs from the text asked or generated."""

    action: str
    screen: str
    question: Verdict | None = None
    answer: Verdict | None = None
    changed: bool = False

    @property
    def flagged(self) -> bool:
        return any(v is not None and v.flagged for v in (self.question, self.answer))


class Guard:
    """Applies `action` (flag, refuse or redact) to what `screen` flags."""

    def __init__(self, screen: Screen, action: str) -> None:
        if action not in ACTIONS[1:]:
            raise ScreenError(f"action {action!r} must be one of {', '.join(ACTIONS[1:])}")
        self.screen = screen
        self.action = action

    def stream(self, question: str, answer: Callable[[str], Iterator[Item]],
               grounded: bool = True) -> Iterator[Item | Screening]:
        """Screen `question`, call `answer` with it (unless refused, or redacted first), screen
        the answer; `grounded`: the stream ends with an `Answer` (ask), else text only (chat)."""
        asked = check_text(self.screen, question)
        if asked.flagged and self.action == "refuse":
            yield QUESTION_REFUSAL
            if grounded:
                yield Answer(answer=QUESTION_REFUSAL, citations=[], refused=True, grounded=True,
                             support_score=1.0, passages=[], refusal_reason="offensive_question")
            yield Screening(self.action, self.screen.name, asked, None, changed=True)
            return
        changed = False
        if asked.flagged and self.action == "redact":
            question, _ = redact(self.screen, question)
            changed = True
        hold = self.action != "flag"
        pieces: list[str] = []
        final: Answer | None = None
        for item in answer(question):
            if isinstance(item, Answer):
                final = item
                continue
            pieces.append(item)
            if not hold:
                yield item
        text = final.answer if final is not None else "".join(pieces)
        verdict, shown = self._answer(text, final)
        if hold:
            yield shown
        if final is not None:
            yield self._replace(final, shown, verdict)
        yield Screening(self.action, self.screen.name, asked, verdict,
                        changed=changed or shown != text)

    def _answer(self, text: str, final: Answer | None) -> tuple[Verdict | None, str]:
        """The verdict on the answer and the text to show for it."""
        if final is not None and final.refused or not text.strip():
            return None, text
        if self.action == "redact":
            shown, verdict = redact(self.screen, text)
            return verdict, shown
        verdict = check_text(self.screen, text)
        if verdict.flagged and self.action == "refuse":
            return verdict, ANSWER_REFUSAL
        return verdict, text

    @staticmethod
    def _replace(final: Answer, shown: str, verdict: Verdict | None) -> Answer:
        if shown == final.answer:
            return final
        if shown == ANSWER_REFUSAL:
            return replace(final, answer=shown, citations=[], refused=True,
                           refusal_reason="offensive_answer")
        return replace(final, answer=shown)
