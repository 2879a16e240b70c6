"""Guard: flag passes the stream through, refuse and redact hold it; questions screened first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from generation.rag import Answer
from guardrails.errors import ScreenError
from guardrails.policy import ANSWER_REFUSAL, QUESTION_REFUSAL, Guard, Screening
from guardrails.screen import MASK, WordListScreen

SCREEN = WordListScreen(["bullshit", "moron"])


def answering(text: str, asked: list[str]):  # type: ignore[no-untyped-def]
    def answer(question: str) -> Iterator[str | Answer]:
        asked.append(question)
        for word in text.split(" "):
            yield word + " "
        yield Answer(answer=text, citations=[], refused=False, grounded=True, support_score=1.0,
                     passages=[])
    return answer


def run(action: str, question: str, text: str) -> tuple[list[object], list[str]]:
    asked: list[str] = []
    return list(Guard(SCREEN, action).stream(question, answering(text, asked))), asked


def test_flag_streams_as_it_comes_and_ends_with_the_verdicts() -> None:
    items, asked = run("flag", "where is the pump, moron?", "The pump is in the shed.")
    assert asked == ["where is the pump, moron?"]
    assert items[:5] == ["The ", "pump ", "is ", "in ", "the "]
    final, screening = items[-2], items[-1]
    assert isinstance(final, Answer) and final.answer == "The pump is in the shed."
    assert isinstance(screening, Screening) and screening.flagged and not screening.changed
    assert screening.question is not None and screening.question.terms == ("moron",)
    assert screening.answer is not None and not screening.answer.flagged


def test_refuse_an_offensive_question_without_answering_it() -> None:
    items, asked = run("refuse", "moron, where is the pump?", "The pump is in the shed.")
    assert asked == [] and items[0] == QUESTION_REFUSAL
    final = items[1]
    assert isinstance(final, Answer) and final.refused
    assert final.refusal_reason == "offensive_question"
    screening = items[2]
    assert isinstance(screening, Screening) and screening.changed and screening.answer is None


def test_refuse_an_offensive_answer_holds_every_piece_back() -> None:
    items, _ = run("refuse", "where is the pump?", "That is bullshit, look yourself.")
    assert items[0] == ANSWER_REFUSAL and len(items) == 3
    final = items[1]
    assert isinstance(final, Answer) and final.refused and final.answer == ANSWER_REFUSAL
    assert final.refusal_reason == "offensive_answer"


def test_redact_masks_the_question_before_answering_and_the_answer_after() -> None:
    items, asked = run("redact", "moron, where is the pump?", "That is bullshit. It is in the shed.")
    assert asked == [f"{MASK}, where is the pump?"]
    assert items[0] == f"That is {MASK}. It is in the shed."
    final, screening = items[1], items[2]
    assert isinstance(final, Answer) and final.answer == items[0] and not final.refused
    assert isinstance(screening, Screening) and screening.changed


def test_a_refusal_is_not_screened_and_a_clean_answer_is_untouched() -> None:
    def refusing(question: str) -> Iterator[str | Answer]:
        yield Answer(answer="I can't answer that.", citations=[], refused=True, grounded=True,
                     support_score=1.0, passages=[])
    items = list(Guard(SCREEN, "redact").stream("where?", refusing))
    screening = items[-1]
    assert isinstance(screening, Screening) and screening.answer is None
    items, _ = run("redact", "where is the pump?", "In the shed.")
    assert items[0] == "In the shed." and not items[-1].changed  # type: ignore[union-attr]


def test_plain_chat_is_screened_on_its_text() -> None:
    def chat(question: str) -> Iterator[str | Answer]:
        yield from ["what ", "bullshit"]
    items = list(Guard(SCREEN, "refuse").stream("hello", chat, grounded=False))
    assert items[0] == ANSWER_REFUSAL and isinstance(items[1], Screening)
    assert items[1].answer is not None and items[1].answer.flagged
    items = list(Guard(SCREEN, "refuse").stream("you moron", chat, grounded=False))
    assert items[0] == QUESTION_REFUSAL and isinstance(items[1], Screening) and len(items) == 2


def test_unknown_actions_are_refused() -> None:
    with pytest.raises(ScreenError, match="flag, refuse, redact"):
        Guard(SCREEN, "off")
