"""Prompt budget, citation mapping, refusal detection and support scoring."""

from __future__ import annotations

import random

import pytest

from generation.grounding import (
    REFUSAL,
    Example,
    Passage,
    build_messages,
    extract_citations,
    final_answer,
    fit_passages,
    is_refusal,
    support_score,
)


def _tokens(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"].split()) + 4 for m in messages)


def _passages(n: int, seed: int = 0) -> list[Passage]:
    rng = random.Random(seed)
    return [Passage(n=i + 1, text=" ".join(f"w{rng.randint(0, 99)}"
                                           for _ in range(rng.randint(5, 120))),
                    source=f"doc{i}.md", page=None, score=rng.random()) for i in range(n)]


@pytest.mark.parametrize("seed", range(20))
def test_prompt_never_exceeds_the_budget(seed: int) -> None:
    rng = random.Random(seed)
    context, max_new = rng.randint(300, 2000), rng.randint(16, 256)
    passages = _passages(rng.randint(1, 30), seed)
    kept, messages = fit_passages("what is w5?", passages, _tokens, context, max_new)
    assert _tokens(messages) + max_new <= context
    assert [p.text for p in kept] == [p.text for p in passages[: len(kept)]], \
        "the lowest-ranked passages are dropped first"
    assert [p.n for p in kept] == list(range(1, len(kept) + 1)), "renumbered 1..n"


def test_budget_too_small_is_an_error() -> None:
    with pytest.raises(ValueError, match="prompt budget"):
        fit_passages("question " * 500, _passages(3), _tokens, 300, 50)
    with pytest.raises(ValueError, match="context length"):
        fit_passages("q", _passages(3), _tokens, 300, 300)


def test_citations_come_from_markers_present_and_bad_markers_are_removed() -> None:
    passages = _passages(3)
    answer, cited = extract_citations("It is 42 ML/d [2]. Also [7] and [1, 9].", passages)
    assert [p.n for p in cited] == [1, 2]
    assert answer == "It is 42 ML/d [2]. Also and [1]."
    assert extract_citations("no markers", passages) == ("no markers", [])


def test_modes() -> None:
    p = _passages(2)
    assert build_messages("q", p)[0]["role"] == "system"
    assert "Reasoning" in build_messages("q", p, mode="cot")[0]["content"]
    few = build_messages("q", p, mode="few_shot", examples=[Example("eq", "ea [1]")])
    assert [m["role"] for m in few] == ["system", "user", "assistant", "user"]
    with pytest.raises(ValueError, match="needs at least one example"):
        build_messages("q", p, mode="few_shot")
    with pytest.raises(ValueError, match="mode"):
        build_messages("q", p, mode="tree_of_thought")
    assert final_answer("Reasoning: passage 1 says so.\nAnswer: 15 days [1]", "cot") == "15 days [1]"
    assert final_answer(" plain ", "zero_shot") == "plain"


def test_refusal_detection() -> None:
    assert is_refusal(REFUSAL)
    assert is_refusal("Sorry - I can’t answer that from the provided documents.")
    assert not is_refusal("The capacity is 42 ML/d [1].")


def test_support_score() -> None:
    p = [Passage(1, "Sallow Cross treats 42 ML/d of river water.", "a", None, 1.0)]
    assert support_score("Sallow Cross treats 42 ML/d [1].", p) == 1.0
    assert support_score("Penguins enjoy jazz music.", p) == 0.0
    assert 0 < support_score("Sallow Cross treats penguins.", p) < 1


def test_calibrated_threshold_separates_scores() -> None:
    from generation.evaluation import calibrate_threshold

    t, stats = calibrate_threshold([0.6, 0.7, 0.8, 0.9], [0.2, 0.3, 0.65], max_false_refusal=0.0)
    assert 0.3 < t <= 0.6
    assert stats == {"refusal_rate": round(2 / 3, 4), "false_refusal_rate": 0.0}
    t, stats = calibrate_threshold([0.6, 0.7, 0.8, 0.9], [0.2, 0.3, 0.65], max_false_refusal=0.25)
    assert 0.65 <= t <= 0.7 and stats["refusal_rate"] == 1.0
    with pytest.raises(ValueError, match="both"):
        calibrate_threshold([], [0.1])


def test_attribution_cites_supported_uncited_sentences_only() -> None:
    from generation.grounding import attribute

    p = [Passage(1, "Stage 2 complaints are answered within 15 working days.", "a.md", None, .9),
         Passage(2, "Sallow Cross treats 42 ML/d of river water.", "b.md", None, .8)]
    out = attribute("Sallow Cross treats 42 ML/d. Penguins like jazz. Stage 2 takes 15 working "
                    "days [1].", p)
    assert out == ("Sallow Cross treats 42 ML/d [2]. Penguins like jazz. Stage 2 takes 15 working "
                   "days [1].")
    assert attribute("anything", []) == "anything"


def test_a_wrong_number_or_an_invented_name_is_never_grounded() -> None:
    from generation.grounding import Passage, unsupported_facts
    from generation.rag import AskConfig, RagAnswerer

    cited = [Passage(n=1, text="Chunks are 256 tokens long. Call extension 4417 for Halyard.",
                     source="handbook.md", page=None, score=0.9)]
    assert unsupported_facts("Chunks are 32 tokens long [1]", cited) == ["32"]
    assert unsupported_facts("Call Bob on 4417 [1]", cited) == ["Bob"]
    assert unsupported_facts("256 tokens [1]. Halyard", cited) == []
    config = AskConfig()
    wrong = RagAnswerer.finish("Chunks are 32 tokens long [1].", cited, config)
    right = RagAnswerer.finish("Chunks are 256 tokens long [1].", cited, config)
    assert wrong.support_score >= config.support_threshold  # most words are supported...
    assert not wrong.grounded                                # ...but the number is not
    assert right.grounded


def test_recite_points_a_copied_span_at_the_passage_it_came_from() -> None:
    from generation.grounding import Passage, recite

    ps = [Passage(n=1, text="Chunks are 256 tokens.", source="a.md", page=None, score=0.9),
          Passage(n=2, text="The embedder has 384 dimensions.", source="b.md", page=None, score=0.8)]
    assert recite("384 dimensions [1]", ps) == "384 dimensions [2]"
    assert recite("256 tokens [1] and 384 dimensions [1].", ps) == "256 tokens [1] and 384 dimensions [2]."
    assert recite("256 tokens [1]", ps) == "256 tokens [1]"      # already right
    assert recite("made up [1]", ps) == "made up [1]"            # nowhere: left for grounded to judge
