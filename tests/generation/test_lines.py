"""Line answers: answer lines of a passage, their ranking, shortening, and `ask` in line style."""

from __future__ import annotations

import numpy as np
import pytest

from generation.grounding import REFUSAL, Passage
from generation.lines import (
    LineWeights,
    first_piece,
    passage_lines,
    rank_lines,
    shorten,
    superseded,
)
from generation.rag import AskConfig, RagAnswerer
from retrieval.types import Hit
from tests.generation.fakes import ScriptedGenerator

TARIFF = """Tariff Schedule 2025/26 > Assessed charges
Customers without a meter pay an assessed charge.
| Property | Annual charge | Monthly |
|---|---|---|
| Detached house | £482.00 | £40.17 |
| Flat | £301.00 | £25.08 |
Charges are reviewed each April."""

FILM = ("Spectre is the twenty-fourth James Bond film. Spectre's budget was about $245 million, "
        "one of the most expensive films ever made. Léa Seydoux plays Dr. Madeleine Swann.")


def test_a_heading_is_kept_apart_and_table_rows_carry_their_column_headers() -> None:
    heading, lines = passage_lines(TARIFF)
    assert heading == "Tariff Schedule 2025/26 > Assessed charges"
    assert "Detached house: Annual charge £482.00, Monthly £40.17" in lines
    assert "Flat: Annual charge £301.00, Monthly £25.08" in lines
    assert not any(line.startswith(("|", "Property")) for line in lines)  # header and separator
    assert lines[0] == "Customers without a meter pay an assessed charge."


def test_a_passage_without_a_heading_keeps_its_first_sentence() -> None:
    heading, lines = passage_lines(FILM)
    assert heading == ""
    assert lines[0] == "Spectre is the twenty-fourth James Bond film."
    assert len(lines) == 3


def _passages() -> list[Passage]:
    return [Passage(n=1, text=FILM, source="spectre.txt", page=None, score=0.5),
            Passage(n=2, text=TARIFF, source="tariff.md", page=3, score=0.4)]


def test_the_line_holding_the_question_words_ranks_first() -> None:
    ranked = rank_lines("What was the budget of Spectre?", _passages())
    assert ranked[0].text.startswith("Spectre's budget was about $245 million") and ranked[0].n == 1
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    assert ranked[0].coverage == 1.0


def test_the_heading_lets_a_table_row_answer() -> None:
    ranked = rank_lines("What is the 2025/26 tariff for a detached house?", _passages())
    assert ranked[0].text.startswith("Detached house:") and ranked[0].n == 2


def test_the_model_answer_decides_between_lines_words_cannot_tell_apart() -> None:
    passages = [Passage(n=1, text="The north gate opens at 6 am. The south gate opens at 8 am.",
                        source="gates.txt", page=None, score=0.5)]
    assert rank_lines("When does the gate open?", passages, "8 am")[0].text.startswith("The south")
    assert rank_lines("When does the gate open?", passages, "6 am")[0].text.startswith("The north")
    no_model = LineWeights(model=0.0)
    assert rank_lines("When does the gate open?", passages, "8 am", weights=no_model)[0].text \
        .startswith("The north")  # a tie keeps passage order


def test_a_line_holding_what_the_question_asks_for_wins_over_one_that_echoes_it() -> None:
    text = "Researchers report flaws through our bug bounty programme. The largest reward is £5,000."
    passages = [Passage(n=1, text=text, source="security.txt", page=None, score=0.5)]
    question = "How much is the largest bug bounty reward?"
    assert rank_lines(question, passages, weights=LineWeights(kind=0.0))[0].text.startswith("Res")
    assert "£5,000" in rank_lines(question, passages)[0].text  # "how much" asks for a number


def test_last_years_document_gives_way_to_this_years_unless_the_question_names_its_year() -> None:
    old = Passage(n=1, text="Up to 2 hours: £2.80.", source="parking_charges_2024.md", page=None,
                  score=0.5)
    new = Passage(n=2, text="Up to 2 hours: £3.20.", source="parking_charges_2025.md", page=None,
                  score=0.5)
    other = Passage(n=3, text="Visiting is 14:00 to 18:00.", source="visiting.html", page=None,
                    score=0.4)
    assert superseded("What does parking cost?", [old, new, other]) == {1}
    assert superseded("What did parking cost in 2024?", [old, new, other]) == set()
    assert superseded("What does parking cost?", [old, other]) == set()  # no newer one shown
    question = "How much is parking for up to 2 hours?"
    assert rank_lines(question, [old, new])[0].n == 2
    assert rank_lines(question, [old, new], weights=LineWeights(superseded=0.0))[0].n == 1  # a tie
    assert rank_lines("How much was parking for up to 2 hours in 2024?", [old, new])[0].n == 1


def test_the_embedder_adds_meaning() -> None:
    passages = [Passage(n=1, text="Cats sleep a lot. Dogs bark at night.", source="a.txt",
                        page=None, score=0.5)]

    def embed(texts: list[str]) -> np.ndarray:
        # the question is closest to the line about dogs
        vecs = [[1.0, 0.0] if ("noise" in t or "bark" in t) else [0.0, 1.0] for t in texts]
        return np.array(vecs)

    assert rank_lines("Which animal makes noise?", passages, embed=embed)[0].text == \
        "Dogs bark at night."
    assert rank_lines("Which animal makes noise?", passages) != []


def test_no_lines_no_ranking() -> None:
    assert rank_lines("Anything?", [Passage(n=1, text="Hi.", source="a", page=None, score=1)]) == []


def test_shorten_keeps_the_window_around_the_answer() -> None:
    line = " ".join(f"w{i}" for i in range(100))
    cut = shorten(line, "w70", max_words=20)
    assert "w70" in cut and cut.startswith("…") and cut.endswith("…")
    assert len(cut.strip("…").split()) == 20
    assert shorten("short line", "x") == "short line"
    assert shorten(line, "", max_words=10).startswith("w0 ")


def test_first_piece() -> None:
    assert first_piece("Brannock [1] and Sallow Cross [2].") == "brannock"
    assert first_piece("$245 million, roughly [1]") == "$245 million"
    assert first_piece("") == ""


def _hits(passages: list[Passage]) -> list[Hit]:
    return [Hit(chunk_id=i, doc_id=p.source, source=p.source, page=p.page, text=p.text,
                score=p.score, metadata={}) for i, p in enumerate(passages, 1)]


def test_ask_in_line_style_answers_with_the_whole_cited_line_and_streams_it_once() -> None:
    gen = ScriptedGenerator(lambda _: "$245 million [1]")
    config = AskConfig(answer_style="line", focus_sentences=0, min_score=0.0)
    items = list(RagAnswerer(lambda: gen).stream("How much did Spectre cost?",
                                                 _hits(_passages()), config))
    pieces, answer = items[:-1], items[-1]
    assert answer.answer.startswith("Spectre's budget was about $245 million")
    assert pieces == [answer.answer]  # the line, once: never the model's span, then the line
    assert [c.source for c in answer.citations] == ["spectre.txt"]
    assert answer.grounded and not answer.refused
    assert {"line_score", "line_margin", "line_semantic"} <= set(answer.stats)


def test_a_refusal_stays_a_refusal_in_line_style() -> None:
    gen = ScriptedGenerator(lambda _: REFUSAL)
    config = AskConfig(answer_style="line", focus_sentences=0, min_score=0.0)
    answer = RagAnswerer(lambda: gen).answer("Who won?", _hits(_passages()), config)
    assert answer.refused and answer.answer == REFUSAL and "line_score" not in answer.stats


def test_answer_style_is_checked() -> None:
    with pytest.raises(ValueError, match="answer_style"):
        AskConfig(answer_style="essay")
