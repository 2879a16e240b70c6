"""The period a question names, and the answerability check refusing answers about another one."""

from __future__ import annotations

import pytest

from generation.answer_types import missing_counted
from generation.answerability import FEATURES, VERIFIED, AnswerabilityModel
from generation.grounding import Passage
from generation.qualifiers import context_of, missing_period, names_asked, periods
from generation.rag import Answer, AskConfig, RagAnswerer
from retrieval.types import Hit
from tests.generation.fakes import ScriptedGenerator


@pytest.mark.parametrize(("text", "spans"), [
    ("revenue in 2024/25 was", [(2024, 2025, True)]),
    ("in FY2024 and FY25", [(2024, 2024, False), (2025, 2025, False)]),
    ("through the 1990s", [(1990, 1999, False)]),
    ("between 1864-1885", [(1864, 1885, False)]),
    ("from 2019 to 2023", [(2019, 2023, False)]),
    ("on 2024-03-12", [(2024, 2024, False)]),  # a date: its year
    ("£2,024 and 2,000 rows, version 6.2019", []),  # money, thousands, a version: no year
])
def test_periods_reads_years_financial_years_ranges_and_decades(
        text: str, spans: list[tuple[int, int, bool]]) -> None:
    assert [(p.start, p.end, p.pair) for p in periods(text)] == spans


@pytest.mark.parametrize(("question", "text", "missing"), [
    ("What was the revenue in 2024?", "Revenue 2023: £4.1 million", "2024"),
    ("What was the revenue in 2024?", "Revenue for 2024: £4.1 million", None),
    ("What was the revenue in 2024?", "Revenue 2024/25: £4.1 million", None),  # part of it
    ("How many attendances were there in 2022/23?", "Attendances: 148,300 (2023/24: 141,900)",
     "2022/23"),
    ("How many attendances were there in 2023/24?", "Attendances: 148,300 (2023/24: 141,900)", None),
    ("What did the pass cost in 2023/24?", "Charges from April 2023", None),
    ("What did Russia do between 1864-1885?", "In 1870 Russia sold Alaska", None),
    ("What happened in the 1990s?", "In 1994 the plant closed", None),
    ("What happened in the 1990s?", "In 1984 the plant closed", "1990s"),
    ("Who founded the company?", "It was founded in 2016 by Ana Ruiz", None),  # no period asked
])
def test_missing_period(question: str, text: str, missing: str | None) -> None:
    assert missing_period(question, text) == missing


def test_the_context_holds_the_source_and_section() -> None:
    p = Passage(n=1, text="Team: £11", source="prices_2025.md", page=None, score=0.5,
                metadata={"section": "Price list 2025/26"})
    assert missing_period("What does Team cost in 2025?", context_of([p])) is None
    assert missing_period("What does Team cost in 2024?", context_of([p])) == "2024"


def _model() -> AnswerabilityModel:
    lexical = [f for f in FEATURES if f not in VERIFIED]
    return AnswerabilityModel(weights=dict.fromkeys(lexical, 0.0), bias=5.0,
                              mean=dict.fromkeys(lexical, 0.0), scale=dict.fromkeys(lexical, 1.0),
                              threshold=0.5)


def _hits(text: str) -> list[Hit]:
    return [Hit(chunk_id=1, doc_id="d", source="report.md", page=None, text=text, score=0.7,
                metadata={})]


def _ask(question: str, said: str, hits: list[Hit]) -> Answer:
    """The judged answer when the model says `said` over `hits`."""
    gen = ScriptedGenerator(lambda _: said)
    return RagAnswerer(lambda: gen).answer(question, hits, AskConfig(answerability=_model(),
                                                                     focus_sentences=0))


def test_an_answer_about_another_year_is_refused_whatever_it_scores() -> None:
    hits = _hits("Annual report\nRevenue in 2023 was £4.1 million.")
    other = _ask("What was the revenue in 2024?", "£4.1 million [1]", hits)
    assert other.refused and "2024" in (other.refusal_reason or "")
    assert other.answerable_score is not None and other.answerable_score > 0.5
    same = _ask("What was the revenue in 2023?", "£4.1 million [1]", hits)
    assert not same.refused and "4.1 million" in same.answer


@pytest.mark.parametrize(("question", "names"), [
    ("How much does the Enterprise plan cost per user?", ["Enterprise"]),
    ("What is the target response time for a P4 ticket?", ["P4"]),
    ("Who is the Chief Financial Officer of Quillstack?",
     ["Chief", "Financial", "Officer", "Quillstack"]),
    ("What Is The Price Of The Team Plan?", []),  # title case: capitals mark no names
    ("WHO IS THE CFO?", []),
    ("Who is the CFO of the US branch?", []),  # acronyms may be spelt out in the documents
    ("what is the phone number?", []),
])
def test_names_asked(question: str, names: list[str]) -> None:
    assert names_asked(question) == names


def _never_enterprise(words: list[str]) -> list[str]:
    return [w for w in words if w == "Enterprise"]


def test_a_name_the_knowledge_base_never_mentions_is_refused_before_the_model_runs() -> None:
    gen = ScriptedGenerator(lambda _: "£4.1 million [1]")
    hits = _hits("Revenue in 2023 was £4.1 million.")
    judged = AskConfig(answerability=_model(), focus_sentences=0)
    refused = RagAnswerer(lambda: gen).answer("What is the Enterprise price?", hits, judged,
                                              unknown_words=_never_enterprise)
    assert refused.refused and "never mentions 'Enterprise'" in (refused.refusal_reason or "")
    assert not gen.calls
    # without the answerability check, the names are not judged
    plain = RagAnswerer(lambda: gen).answer("What is the Enterprise price?", hits,
                                            AskConfig(focus_sentences=0), unknown_words=_never_enterprise)
    assert not plain.refused and gen.calls


@pytest.mark.parametrize(("question", "answer", "missing"), [
    ("How many staff work at the Quay House office?", "Quay House: Opened 2020, Desks 45 [1]",
     "staff work"),
    ("How many desks are there at Quay House?", "Quay House: Opened 2020, Desks 45 [1]", None),
    ("How many beds will the ward have?", "Reopened as a 28-bed frailty unit [1].", None),
    ("How many people can be seated in the Parlour?", "Parlour: Capacity 24 seated [1]", None),
    ("How many people live in the city?", "The city had 5,000 residents [1].", None),  # generic
    ("How much does a pitch cost?", "A pitch is £22 [1].", None),  # not a "how many" question
])
def test_missing_counted(question: str, answer: str, missing: str | None) -> None:
    assert missing_counted(question, answer) == missing


def test_an_answer_counting_something_else_is_refused() -> None:
    hits = _hits("Quay House\nDesks 45")
    staff = _ask("How many staff work at Quay House?", "Desks 45 [1]", hits)
    assert staff.refused and "how many staff" in (staff.refusal_reason or "")
    desks = _ask("How many desks are at Quay House?", "Desks 45 [1]", hits)
    assert not desks.refused


def test_the_period_may_be_named_by_another_shown_passage_of_the_cited_document() -> None:
    hits = [Hit(chunk_id=1, doc_id="report", source="report.md", page=None,
                text="Revenue was £4.1 million.", score=0.7, metadata={}),
            Hit(chunk_id=2, doc_id="report", source="report.md", page=None,
                text="This report covers 2024.", score=0.6, metadata={}),
            Hit(chunk_id=3, doc_id="other", source="other.md", page=None,
                text="Plans for 2025.", score=0.5, metadata={})]
    same = _ask("What was the revenue in 2024?", "£4.1 million [1]", hits)
    assert not same.refused
    other = _ask("What was the revenue in 2025?", "£4.1 million [1]", hits)
    assert other.refused and "2025" in (other.refusal_reason or "")  # another document names it


def test_without_answer_checks_only_the_classifier_refuses() -> None:
    gen = ScriptedGenerator(lambda _: "£4.1 million [1]")
    config = AskConfig(answerability=_model(), focus_sentences=0, answer_checks=False)
    hits = _hits("Revenue in 2023 was £4.1 million.")
    answer = RagAnswerer(lambda: gen).answer("What was the Enterprise revenue in 2024?", hits,
                                             config, unknown_words=_never_enterprise)
    assert not answer.refused and answer.answerable_score is not None
