"""/ask and the OpenAI-compatible endpoints, with a scripted generator (no model weights)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from api.settings import Settings
from generation.grounding import REFUSAL
from ingest.pipeline import IngestPipeline
from tests.fakes import FakeEmbedder
from tests.generation.fakes import ScriptedGenerator
from tests.helpers import LOCAL_URL, text_doc

DOCS = {
    "pumps.md": "# Pumps\n\nThe blue pump moves water uphill to the Brannock reservoir.",
    "valves.txt": "Valves stop water flowing backwards into the mains.",
}


def _answer(messages: list[dict[str, str]]) -> str:
    question = messages[-1]["content"].rsplit("Question:", 1)[-1]
    if "blue pump" in question:
        return "The blue pump moves water uphill [1]. See also [9]."
    return REFUSAL


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path / "data", min_score=0.2, chunk_size=64,
                        chunk_overlap=8, generator="scripted", answer_style="span")
    svc = Services(settings, embedder=FakeEmbedder(), generator=ScriptedGenerator(_answer))
    svc.create_collection("kb")
    coll = svc.collection("kb")
    IngestPipeline.for_collection(coll, svc.embedder).run(
        [text_doc(s, t, "md" if s.endswith(".md") else "txt") for s, t in DOCS.items()])
    yield svc
    svc.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services.settings, services), base_url=LOCAL_URL) as c:
        yield c


def _sse(text: str) -> list[tuple[str | None, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        name = next((ln[7:] for ln in block.splitlines() if ln.startswith("event: ")), None)
        data = next(ln[6:] for ln in block.splitlines() if ln.startswith("data: "))
        events.append((name, data if data == "[DONE]" else json.loads(data)))
    return events


def test_ask_returns_answer_with_citations(client: TestClient) -> None:
    r = client.post("/v1/collections/kb/ask", json={"question": "what does the blue pump do?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] == "The blue pump moves water uphill [1]. See also."
    assert [c["n"] for c in body["citations"]] == [1], "the [9] marker pointed at no passage"
    assert body["citations"][0]["source"] == "pumps.md"
    assert body["refused"] is False and body["grounded"] is True
    assert 0.5 < body["support_score"] <= 1


def test_low_retrieval_score_refuses_without_calling_the_model(services: Services,
                                                                client: TestClient) -> None:
    r = client.post("/v1/collections/kb/ask", json={"question": "zebra quantum jazz"})
    body = r.json()
    assert body["refused"] is True and body["answer"] == REFUSAL
    assert "scored above" in body["refusal_reason"]
    assert services.serving.generator.calls == []  # type: ignore[attr-defined]


def test_model_refusal_is_flagged(client: TestClient) -> None:
    body = client.post("/v1/collections/kb/ask", json={"question": "do valves stop water?"}).json()
    assert body["refused"] is True and body["citations"] == []


def test_ask_streams_tokens_then_done(client: TestClient) -> None:
    r = client.post("/v1/collections/kb/ask",
                    json={"question": "what does the blue pump do?", "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _sse(r.text)
    tokens = [d["text"] for n, d in events if n == "token"]
    assert len(tokens) > 3 and events[-1][0] == "done"
    assert "".join(tokens).startswith("The blue pump")
    assert events[-1][1]["citations"][0]["source"] == "pumps.md"


def test_a_line_answer_is_the_whole_cited_line_in_json_and_in_sse(client: TestClient) -> None:
    ask = {"question": "what does the blue pump do?", "answer_style": "line"}
    body = client.post("/v1/collections/kb/ask", json=ask).json()
    assert body["answer"] == "The blue pump moves water uphill to the Brannock reservoir [1]."
    assert [c["source"] for c in body["citations"]] == ["pumps.md"] and body["grounded"]
    events = _sse(client.post("/v1/collections/kb/ask", json={**ask, "stream": True}).text)
    assert [d["text"] for n, d in events if n == "token"] == [body["answer"]]
    assert events[-1][0] == "done" and events[-1][1]["answer"] == body["answer"]
    r = client.post("/v1/collections/kb/ask", json={**ask, "answer_style": "essay"})
    assert r.status_code == 422 and "answer_style" in r.text


def test_ask_errors(client: TestClient) -> None:
    assert client.post("/v1/collections/nope/ask", json={"question": "x"}).status_code == 404
    r = client.post("/v1/collections/kb/ask", json={"question": "x", "mode": "few_shot"})
    assert r.status_code == 422 and "example" in r.json()["detail"]
    r = client.post("/v1/collections/kb/ask", json={"question": "blue pump", "stream": True,
                                                    "max_new_tokens": 4000})
    assert r.status_code == 422 and "context length" in r.json()["detail"]


def test_openai_chat_completions_over_a_collection(client: TestClient) -> None:
    msgs = [{"role": "user", "content": "what does the blue pump do?"}]
    body = client.post("/v1/chat/completions", json={"model": "kb", "messages": msgs}).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].startswith("The blue pump")
    assert body["ragtune"]["citations"][0]["source"] == "pumps.md"

    r = client.post("/v1/chat/completions", json={"model": "kb", "messages": msgs, "stream": True})
    events = _sse(r.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [d for _, d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.startswith("The blue pump")


def test_openai_plain_chat_unknown_model_embeddings_models(client: TestClient) -> None:
    msgs = [{"role": "user", "content": "tell me about the blue pump"}]
    body = client.post("/v1/chat/completions", json={"model": "scripted", "messages": msgs}).json()
    assert body["choices"][0]["message"]["content"]
    # plain chat with the base model names no adapter; the offensive-text screen's verdicts stay
    assert set(body.get("ragtune", {})) == {"screening"}
    r = client.post("/v1/chat/completions", json={"model": "gpt-4", "messages": msgs})
    assert r.status_code == 404 and "GET /v1/models" in r.json()["detail"]
    emb = client.post("/v1/embeddings", json={"model": "fake-bow", "input": ["a", "b c"]}).json()
    assert [d["index"] for d in emb["data"]] == [0, 1] and len(emb["data"][0]["embedding"]) == 64
    ids = {m["id"] for m in client.get("/v1/models").json()["data"]}
    assert {"scripted", "kb"} <= ids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_official_openai_client_against_a_live_server(services: Services) -> None:
    openai = pytest.importorskip("openai")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(services.settings, services),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        msgs = [{"role": "user", "content": "what does the blue pump do?"}]
        reply = client.chat.completions.create(model="kb", messages=msgs)
        assert reply.choices[0].message.content.startswith("The blue pump")
        stream = client.chat.completions.create(model="kb", messages=msgs, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream)
        assert text.startswith("The blue pump")
        emb = client.embeddings.create(model="fake-bow", input="blue pump")
        assert len(emb.data[0].embedding) == 64
        assert "kb" in {m.id for m in client.models.list()}
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nope", messages=msgs)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_strict_mode_refuses_ungrounded_answers(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", min_score=0.2, chunk_size=64, chunk_overlap=8,
                        generator="scripted", refuse_ungrounded=True)
    gen = ScriptedGenerator(lambda m: "Penguins play the trombone at midnight.")
    svc = Services(settings, embedder=FakeEmbedder(), generator=gen)
    svc.create_collection("kb")
    IngestPipeline.for_collection(svc.collection("kb"), svc.embedder).run(
        [text_doc("pumps.md", DOCS["pumps.md"], "md")])
    answer = svc.ask("kb", "what does the blue pump do?", svc.ask_config())
    assert answer.refused and "not supported" in (answer.refusal_reason or "")
    svc.close()


def test_evaluation_endpoint_runs_stores_and_lists(client: TestClient) -> None:
    questions = [
        {"id": "q1", "question": "what does the blue pump do?", "answers": ["uphill"],
         "match": "any", "answerable": True, "doc": "pumps.md"},
        {"id": "q2", "question": "zebra quantum jazz", "answers": [], "match": "none",
         "answerable": False, "doc": None},
    ]
    r = client.post("/v1/collections/kb/evals", json={"questions": questions})
    assert r.status_code == 202, r.text
    eval_id = r.json()["eval_id"]
    for _ in range(200):
        run = client.get(f"/v1/evals/{eval_id}").json()
        if run["state"] not in ("queued", "running"):
            break
        time.sleep(0.02)
    assert run["state"] == "succeeded", run
    s = run["summary"]
    assert s["answer_accuracy"] == 1.0 and s["refusal_rate"] == 1.0 and s["hit_at_k"] == 1.0
    assert s["citation_precision"] == 1.0
    assert [q["id"] for q in run["results"]] == ["q1", "q2"]
    assert eval_id in [e["eval_id"] for e in client.get("/v1/evals").json()]
    bad = client.post("/v1/collections/kb/evals", json={"questions": [{"question": "x"}]})
    assert bad.status_code == 422 and "answerable" in bad.json()["detail"]
    for wrong, named in (({"question": "x", "answerable": True, "answers": 5}, "answers"),
                         ({"question": 7, "answerable": False}, "question")):
        bad = client.post("/v1/collections/kb/evals", json={"questions": [wrong]})
        assert bad.status_code == 422 and named in bad.json()["detail"], bad.text
    assert client.get("/v1/evals/nope").status_code == 404
