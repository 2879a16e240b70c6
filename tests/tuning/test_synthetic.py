"""Synthetic data: use-case pairs (dedupe, n, system message) and RAG examples from a collection
(serving's prompt layout, the right citation, refusals over other documents), written as JSONL that
`load_samples` reads back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from generation.grounding import REFUSAL, build_messages
from generation.rag import to_passages
from retrieval.collection import Collection
from tests.fakes import FakeEmbedder
from tests.helpers import make_collection, pipeline, text_doc
from tests.tuning.synth_fakes import KB, SYSTEM, ScriptedChat, UseCaseReplies, kb_replies
from tuning.datasets import load_samples
from tuning.errors import TuningError
from tuning.synthetic import NearDuplicates, clean_reply, generate_use_case, is_garbage
from tuning.synthetic_rag import CollectionChunks, cite, generate_from_collection, parse_qa

PROMPTS = [
    "How do I fix a dripping kitchen tap?",
    "how do I fix a dripping kitchen tap",            # near-duplicate of the first
    "",                                               # empty
    "What size of pipe should a shower drain use?",
    "My boiler pressure keeps dropping, what should I check first?",
    "!!! ??? ...",                                    # no words
    "Is it safe to use drain unblocker on an old cast iron pipe?",
    "Can I replace a radiator valve without draining the whole system?",
]


def test_near_duplicates_and_garbage() -> None:
    seen = NearDuplicates(0.8)
    assert seen.add("How do I fix a dripping kitchen tap?")
    assert not seen.add("how do i fix a dripping kitchen tap"), "case and punctuation ignored"
    assert seen.add("How do I fix a dripping bathroom shower head?")
    assert is_garbage("") and is_garbage("  ?! ") and is_garbage("la " * 20)
    assert not is_garbage("Turn off the water at the stop valve first.")
    assert clean_reply('Request: "Why is my sink slow?"') == "Why is my sink slow?"


def test_use_case_keeps_n_distinct_pairs_and_reports_drops(tmp_path: Path) -> None:
    replies = UseCaseReplies(PROMPTS, empty_for=(PROMPTS[4],))
    client = ScriptedChat(replies)
    result = generate_use_case(client, "a plumbing help desk", n=4, temperature=0.9, seed=1)

    assert result.system == SYSTEM, "label and quotes stripped from the generated system message"
    assert len(result.examples) == 4
    prompts = [ex.messages[1]["content"] for ex in result.examples]
    assert prompts == [PROMPTS[0], PROMPTS[3], PROMPTS[6], PROMPTS[7]]
    assert dict(result.dropped) == {"near_duplicate": 1, "empty_or_garbled_prompt": 2,
                                    "empty_or_garbled_response": 1}
    assert result.attempts == 8
    for ex in result.examples:
        assert [m["role"] for m in ex.messages] == ["system", "user", "assistant"]
        assert ex.messages[0]["content"] == SYSTEM
        assert ex.messages[2]["content"].endswith("Done.")
    assert all(call[1] == 0.9 for call in client.calls), "the temperature is passed on"
    responses = [c for c in client.calls if c[0][0]["content"] == SYSTEM]
    assert len(responses) == 5, "no response is asked for a dropped prompt"

    path = result.write_jsonl(tmp_path / "out" / "plumbing.jsonl")
    samples = load_samples(path)
    assert [s.messages for s in samples] == [ex.messages for ex in result.examples]


def test_use_case_stops_at_max_attempts() -> None:
    client = ScriptedChat(UseCaseReplies(["The same question about taps, again and again?"]))
    result = generate_use_case(client, "plumbing", n=5, max_attempts=6)
    assert len(result.examples) == 1 and result.attempts == 6
    assert result.dropped["near_duplicate"] == 5


def test_use_case_refuses_a_useless_system_message() -> None:
    with pytest.raises(TuningError, match="no usable system message"):
        generate_use_case(ScriptedChat(lambda m: "  "), "plumbing", n=2)
    with pytest.raises(TuningError, match="use case is empty"):
        generate_use_case(ScriptedChat(lambda m: SYSTEM), " ", n=2)


def test_parse_qa_and_cite() -> None:
    assert parse_qa("Question: Where is it?\nAnswer: In the hall [2].") == ("Where is it?", "In the hall.")
    assert parse_qa('{"question": "Who runs it now?", "answer": "Sam"}') == ("Who runs it now?", "Sam")
    assert parse_qa("no idea") is None and parse_qa("Question: ?\nAnswer: x") is None
    assert cite("In the hall.", 3) == "In the hall [3]."
    assert cite("Sam", 2, "Sources: [{n}]") == "Sam [2]\nSources: [2]"


def _kb(tmp_path: Path, embedder: FakeEmbedder, docs: list[tuple[str, str, str]] = KB) -> Collection:
    coll = make_collection(tmp_path, embedder)
    report = pipeline(coll, embedder).run([text_doc(src, text) for src, text, _ in docs])
    assert report.count("added") == len(docs)
    return coll


def test_from_collection_uses_the_serving_layout_and_cites_the_source(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    coll = _kb(tmp_path, embedder)
    result = generate_from_collection(CollectionChunks(coll, embedder), ScriptedChat(kb_replies),
                                      n=8, unanswerable_fraction=0.25, k=3, seed=3)
    assert len(result.examples) == 8 and not result.dropped
    kinds = [ex.meta["kind"] for ex in result.examples]
    assert kinds.count("unanswerable") == 2

    cited_numbers = set()
    for ex in result.examples:
        hits = coll.chunks(ex.meta["passage_chunks"])
        question = ex.messages[1]["content"].rsplit("Question: ", 1)[1]
        # the prompt is exactly what `ragtune ask` builds from these hits, in this order
        assert ex.messages[:2] == build_messages(question, to_passages(hits))
        answer = ex.messages[2]["content"]
        if ex.meta["kind"] == "answerable":
            n = ex.meta["cited"]
            assert ex.meta["passage_chunks"][n - 1] == ex.meta["source_chunk"]
            assert len(hits) == 3 and answer.endswith(f"[{n}].")
            assert re.findall(r"\[(\d+)\]", answer) == [str(n)], "the model's own [1] was removed"
            source_text = coll.chunks([ex.meta["source_chunk"]])[0].text
            assert f"[{n}] (source: " in ex.messages[1]["content"]
            assert source_text in ex.messages[1]["content"].split(f"[{n}] (source: ")[1]
            cited_numbers.add(n)
        else:
            assert answer == REFUSAL
            assert ex.meta["source_doc"] not in {h.doc_id for h in hits}
            assert ex.meta["source_chunk"] not in ex.meta["passage_chunks"]
    assert len(cited_numbers) > 1, "shuffling moves the source passage around"


def test_from_collection_answer_suffix_and_round_trip(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    coll = _kb(tmp_path, embedder)
    result = generate_from_collection(CollectionChunks(coll, embedder), ScriptedChat(kb_replies),
                                      n=5, unanswerable_fraction=0.2, k=2, seed=0,
                                      answer_suffix="Sources: [{n}]")
    for ex in result.examples:
        answer = ex.messages[2]["content"]
        if ex.meta["kind"] == "answerable":
            assert answer.endswith(f"\nSources: [{ex.meta['cited']}]")
        else:
            assert answer == REFUSAL, "the refusal stays exact"
    samples = load_samples(result.write_jsonl(tmp_path / "rag.jsonl"))
    assert [s.messages for s in samples] == [ex.messages for ex in result.examples]


def test_from_collection_drops_unusable_replies_and_checks_inputs(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    coll = _kb(tmp_path, embedder)
    source = CollectionChunks(coll, embedder)
    made_up = ScriptedChat(lambda m: "Question: What colour is the sky?\nAnswer: Blue, mostly.")
    result = generate_from_collection(source, made_up, n=2, max_attempts=4)
    assert not result.examples and result.dropped["answer_not_in_chunk"] == 4
    with pytest.raises(ValueError, match="answer suffix"):
        generate_from_collection(source, made_up, n=2, answer_suffix="Sources: [{source}]")
    with pytest.raises(ValueError, match="unanswerable_fraction"):
        generate_from_collection(source, made_up, n=2, unanswerable_fraction=1.5)


def test_unanswerable_needs_a_second_document(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    coll = _kb(tmp_path, embedder, KB[:1])
    source = CollectionChunks(coll, embedder)
    with pytest.raises(TuningError, match="other documents"):
        generate_from_collection(source, ScriptedChat(kb_replies), n=5, unanswerable_fraction=0.2)
    only = generate_from_collection(source, ScriptedChat(kb_replies), n=1, k=3,
                                    unanswerable_fraction=0.0)
    assert len(only.examples) == 1 and only.examples[0].meta["cited"] == 1
