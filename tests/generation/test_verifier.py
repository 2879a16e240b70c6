"""The answer verifier's features (generation.answerability.verified) with a fake verifier, the classifier
refusing to run without one, and the packaged verifier telling an answering line from a near miss."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from generation.answerability import VERIFIED, AnswerabilityModel, verified
from generation.errors import InvalidRequest
from generation.grounding import Passage
from generation.rag import AskConfig, RagAnswerer
from generation.verifier import DEFAULT_VERIFIER, CrossEncoderVerifier, pair_text
from retrieval.types import Hit
from tests.generation.fakes import ScriptedGenerator

SHOWN = [Passage(n=1, text="Tariff 2025/26\n| Property | Annual charge |\n|---|---|\n| Flat | £310 |",
                 source="tariff.md", page=None, score=0.7),
         Passage(n=2, text="The office opens at 9am. It closes at 5pm on weekdays.", source="o.md",
                 page=None, score=0.6)]


class Recording:
    def __init__(self) -> None:
        self.asked: list[tuple[str, list[str]]] = []

    def score(self, question: str, lines: Sequence[str]) -> list[float]:
        self.asked.append((question, list(lines)))
        return [0.9 if "£310" in line else 0.1 + 0.01 * i for i, line in enumerate(lines)]


def test_verified_reads_the_answer_line_with_its_heading_and_every_shown_line() -> None:
    v = Recording()
    feats = verified("What is the 2025/26 charge for a flat?", SHOWN, "Flat: Annual charge £310 [1]", v)
    question, lines = v.asked[0]
    assert lines[0] == pair_text("Tariff 2025/26", "Flat: Annual charge £310") == \
        "Tariff 2025/26: Flat: Annual charge £310"
    assert "The office opens at 9am." in lines and "It closes at 5pm on weekdays." in lines
    assert feats == {"line_verified": 0.9, "best_verified": 0.9}
    other = verified("When does the office close?", SHOWN, "It closes at 5pm on weekdays. [2]", v)
    assert v.asked[-1][1][0] == "It closes at 5pm on weekdays."  # passage 2 has no heading
    assert other["line_verified"] < other["best_verified"]


def _needs_verifier() -> AnswerabilityModel:
    return AnswerabilityModel(weights={"line_verified": 3.0}, bias=0.0, mean={"line_verified": 0.5},
                              scale={"line_verified": 0.25}, threshold=0.5)


def _hits() -> list[Hit]:
    return [Hit(chunk_id=i, doc_id="d", source=p.source, page=None, text=p.text, score=p.score,
                metadata={}) for i, p in enumerate(SHOWN, 1)]


def test_the_classifier_refuses_what_the_verifier_doubts() -> None:
    assert _needs_verifier().needs_verifier and set(VERIFIED) == {"line_verified", "best_verified"}
    gen = ScriptedGenerator(lambda _: "9am [2]")
    config = AskConfig(answerability=_needs_verifier(), focus_sentences=0)
    doubted = RagAnswerer(lambda: gen, get_verifier=Recording).answer("When does it open?", _hits(), config)
    assert doubted.refused and doubted.answerable_score is not None and doubted.answerable_score < 0.5
    assert doubted.stats["feature_line_verified"] == pytest.approx(0.1)
    gen2 = ScriptedGenerator(lambda _: "£310 [1]")
    trusted = RagAnswerer(lambda: gen2, get_verifier=Recording).answer("Flat charge?", _hits(), config)
    assert not trusted.refused and trusted.answerable_score > 0.5
    with pytest.raises(InvalidRequest, match="no verifier"):
        RagAnswerer(lambda: gen).answer("When does it open?", _hits(), config)


def test_the_packaged_verifier_tells_an_answer_from_a_near_miss() -> None:
    if not (DEFAULT_VERIFIER / "verifier.json").exists():
        pytest.skip("no packaged verifier")
    v = CrossEncoderVerifier()
    line = "The Quell lighthouse was built in 1871 by Thomas Stevenson."
    right, wrong_year, other_topic = v.score("Who built the Quell lighthouse in 1871?", [line] * 1) + \
        v.score("Who built the Quell lighthouse in 1902?", [line]) + \
        v.score("Who built the Quell lighthouse in 1871?", ["Visitors may climb the tower in summer."])
    assert right > 0.5 > max(wrong_year, other_topic)
