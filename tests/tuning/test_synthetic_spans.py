"""Synthetic data that a tiny model can make (tuning/synthetic_spans.py): the answer is a sentence of
the chunk, the model writes only the question, a template writes it when the model's reply is no
question; a model that cannot write question and answer is given up on within a few tries; every
user turn is a question."""

from __future__ import annotations

from pathlib import Path

import pytest

from api import cli
from generation.grounding import REFUSAL
from tests.fakes import FakeEmbedder
from tests.helpers import make_collection, pipeline, text_doc
from tests.tuning.synth_fakes import KB, ScriptedChat, UseCaseReplies, serve_chat
from tuning.synthetic import generate_use_case
from tuning.synthetic_rag import GIVE_UP_AFTER, CollectionChunks, generate_from_collection, parse_qa
from tuning.synthetic_spans import answer_spans, as_question, template_question

DOC = """Setup > Keys
Create a key before serving beyond loopback. The default chunk size is 256 tokens.
It is short.
- Keys must be rotated every 90 days.
"""


def test_answer_spans_prefer_checkable_whole_sentences() -> None:
    spans = answer_spans(DOC)
    assert spans[0] == "The default chunk size is 256 tokens."
    assert "Keys must be rotated every 90 days." in spans, "a list item's bullet is dropped"
    assert not any("Setup > Keys" in s or s.startswith("It ") for s in spans)


def test_questions_from_the_model_or_a_template() -> None:
    sentence = "The default chunk size is 256 tokens."
    assert as_question("Question: What is the default chunk size? It is", sentence) == \
        "What is the default chunk size?"
    assert as_question("1. what is the chunk size by default?", sentence) == \
        "What is the chunk size by default?"
    assert as_question(sentence, sentence) is None, "not a question"
    assert as_question("What is the weather like today?", sentence) is None, "not about it"
    assert template_question(sentence, "a.md") == "What is the default chunk size?"
    assert template_question("Keys must be rotated every 90 days.", "a.md") == \
        "What must happen to keys?"
    assert template_question("The API returns a job id.", "a.md") == "What does the API return?"
    assert template_question("Create a key before serving beyond loopback.", "docs/set-up.md") \
        .startswith("What does set up say about ")
    assert parse_qa("Question: Where is it\nAnswer: In the hall.") is None, "no question mark"


def _kb(tmp_path: Path) -> CollectionChunks:
    embedder = FakeEmbedder()
    coll = make_collection(tmp_path, embedder)
    pipeline(coll, embedder).run([text_doc(src, text) for src, text, _ in KB])
    return CollectionChunks(coll, embedder)


def _question(example_messages: list[dict[str, str]]) -> str:
    return example_messages[1]["content"].rsplit("Question: ", 1)[1].strip()


def test_span_answers_with_a_model_that_writes_no_questions(tmp_path: Path) -> None:
    chat = ScriptedChat(lambda messages: "I am a helpful assistant. Here is your answer.")
    result = generate_from_collection(_kb(tmp_path), chat, n=6, unanswerable_fraction=0.34, k=3,
                                      answers="span")
    assert len(result.examples) == 6 and result.attempts == 6
    assert all(max_tokens == 48 for _, _, max_tokens in chat.calls), "only a question is asked for"
    sentences = {text for _, text, _ in KB}
    for ex in result.examples:
        assert _question(ex.messages).endswith("?")
        assert ex.meta["question_by"] == "template"
        answer = ex.messages[2]["content"]
        if ex.meta["kind"] == "answerable":
            assert answer.replace(f" [{ex.meta['cited']}]", "") in sentences
        else:
            assert answer == REFUSAL


def test_span_answers_keep_the_models_question(tmp_path: Path) -> None:
    by_text = {text: question for _, text, question in KB}

    def ask(messages: list[dict[str, str]]) -> str:
        sentence = messages[-1]["content"].split("\n")[1]
        return f"Question: {by_text[sentence]}"

    result = generate_from_collection(_kb(tmp_path), ScriptedChat(ask), n=4,
                                      unanswerable_fraction=0.0, answers="span")
    assert [ex.meta["question_by"] for ex in result.examples] == ["model"] * 4
    assert {_question(ex.messages) for ex in result.examples} <= set(by_text.values())


def test_a_model_that_cannot_write_qa_pairs_is_given_up_on(tmp_path: Path) -> None:
    chat = ScriptedChat(lambda messages: "Sure! The passage is about an office.")
    result = generate_from_collection(_kb(tmp_path), chat, n=5, answers="model")
    assert not result.examples and result.attempts == GIVE_UP_AFTER
    assert "--answers span" in result.stopped and "--endpoint" in result.stopped


def test_use_case_user_turns_are_questions() -> None:
    replies = ["Sure! Here is one: How do I bleed a radiator? Hope that helps.",
               "Tell me about boilers.", "Why does my toilet keep running?"]
    result = generate_use_case(ScriptedChat(UseCaseReplies(replies)), "plumbing", n=2, seed=1)
    prompts = [ex.messages[1]["content"] for ex in result.examples]
    assert prompts == ["How do I bleed a radiator?", "Why does my toilet keep running?"]
    assert result.dropped["not_a_question"] == 1


def test_cli_reports_progress_a_line_each_and_says_when_a_model_is_too_small(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from api.services import Services

    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    embedder = FakeEmbedder()
    monkeypatch.setattr("api.cli_synth._services", lambda s: Services(s, embedder=embedder))
    svc = Services(cli.Settings(), embedder=embedder)
    svc.create_collection("kb")
    pipeline(svc.collection("kb"), embedder).run([text_doc(s, t) for s, t, _ in KB])
    out = tmp_path / "rag.jsonl"
    with serve_chat(lambda messages: "no idea") as server:
        argv = ["tune", "generate-data", "--from-collection", "kb", "--n", "3", "--out", str(out),
                "--endpoint", server["url"], "--unanswerable-fraction", "0"]
        assert cli.main([*argv, "--answers", "span"]) == 0
        err = capsys.readouterr().err
        assert "1/3 examples after 1 attempts\n2/3 examples after 2 attempts\n" in err
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert f"after {GIVE_UP_AFTER} attempts" in err and "too small" in err


def test_a_chunk_cut_inside_a_sentence_does_not_answer_with_its_tail() -> None:
    assert answer_spans("upload time with the form field, a JSON object. The pump is blue and "
                        "large.") == ["The pump is blue and large."]
    assert answer_spans("ragtune is a self-hosted service written in Python.") == \
        ["ragtune is a self-hosted service written in Python."]
    assert template_question("Pages without text, such as scans, are reported as needing OCR.",
                             "a.md") == "What are pages without text?"
    assert answer_spans("Search > Filters\nupload time with the form field, a JSON object.") == []
