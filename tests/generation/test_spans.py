"""Span-grounded decoding: the grammar on its own, then the logits processor on the real model."""

from __future__ import annotations

import pytest

from generation.generator import HFGenerator, SamplingConfig, generate
from generation.grounding import REFUSAL
from generation.rag import AskConfig, RagAnswerer
from generation.spans import SpanConstraint
from retrieval.types import Hit

PASSAGES = ["The Authority replies within 15 working days at Stage 2.",
            "Brannock and Sallow Cross treat water (42 ML/d). The charge is £1.97 per m3."]


@pytest.fixture
def grammar() -> SpanConstraint:
    return SpanConstraint(PASSAGES)


@pytest.mark.parametrize("text", [
    "15 working days [1]", " 15 working days [1].", "15 WORKING days", "£1.97 [2]",
    "Brannock [2] and Sallow Cross [2]", "15 working days [1], £1.97 [2]", "[1", "15 work",
    REFUSAL, REFUSAL[:10], ""])
def test_copies_markers_glue_and_the_refusal_are_allowed(grammar: SpanConstraint,
                                                         text: str) -> None:
    assert grammar.allows(text)


@pytest.mark.parametrize("text", [
    "16 working days",          # a misread number
    "15 workin days",           # a misspelt copy
    "orking days",              # not at a word boundary
    "The answer is 15",         # words that are not in the passages
    "15 working days [3]",      # a passage that was not shown
    "[0]",
    "15 working days [1] I can't",  # a copy then a refusal
    "a, b, c, d, e",            # more than four pieces
    "Stage 2. 15 working",      # a full stop only ends the answer
])
def test_anything_else_is_refused(grammar: SpanConstraint, text: str) -> None:
    assert not grammar.allows(text)


def test_ending(grammar: SpanConstraint) -> None:
    assert grammar.may_end("15 working days [1].")
    assert not grammar.may_end("")
    assert not grammar.may_end("15 working days [")       # an open marker
    assert not grammar.may_end(REFUSAL[:12])               # half a refusal
    assert grammar.may_end(REFUSAL) and grammar.finished(REFUSAL)
    assert not grammar.finished("15 working days")


def test_needs_a_passage() -> None:
    with pytest.raises(ValueError, match="at least one passage"):
        SpanConstraint([])


def _messages(question: str) -> list[dict[str, str]]:
    passages = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(PASSAGES, 1))
    return [{"role": "system", "content": "Answer from the passages with a short exact phrase and "
                                          "its passage number, like [1]."},
            {"role": "user", "content": f"Passages:\n\n{passages}\n\nQuestion: {question}"}]


def test_the_real_model_can_only_copy(hf_generator: HFGenerator) -> None:
    question = "What is the charge per cubic metre?"
    constraint = SpanConstraint(PASSAGES)
    sampling = SamplingConfig(max_new_tokens=24, loop_ngram=8, constraint=constraint)
    answer = generate(hf_generator, _messages(question), sampling)
    assert answer.strip() and constraint.allows(answer), answer
    assert constraint.trace.token_logprobs and constraint.trace.refusal_margin is not None
    assert constraint.trace.refusal_margin <= 0


def test_ask_with_span_decoding_reports_decoder_stats(hf_generator: HFGenerator) -> None:
    hits = [Hit(chunk_id=i, doc_id=f"d{i}", score=0.8, text=t, source=f"s{i}.md", page=None,
                metadata={}) for i, t in enumerate(PASSAGES, 1)]
    config = AskConfig(span_decoding=True, max_new_tokens=24, focus_sentences=0)
    answer = RagAnswerer(lambda: hf_generator).answer("Which works treat water?", hits, config)
    assert answer.refused or SpanConstraint(PASSAGES).allows(answer.answer), answer.answer
    assert "mean_logprob" in answer.stats or answer.refused


def test_without_a_refusal_the_model_must_copy() -> None:
    forced = SpanConstraint(PASSAGES, refusal=None)
    assert not forced.allows(REFUSAL[:10]) and not forced.finished(REFUSAL)
    assert forced.allows("15 working days [1]") and forced.may_end("15 working days [1]")
    assert forced.refusal  # still known, to measure how much the model wanted it
