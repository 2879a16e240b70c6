"""Guardrails over HTTP and the CLI: the offensive-text screen on asks and chats, strict mode per
request, /v1/guard, and `ragtune guard`. The fake embedder is not the packaged probe's, so the
screen here is the word list (better-profanity), as a server on another embedder would run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import cli, cli_guard
from api.app import create_app
from api.services import Services
from api.settings import Settings
from guardrails.policy import ANSWER_REFUSAL, QUESTION_REFUSAL
from guardrails.screen import MASK
from ingest.pipeline import IngestPipeline
from tests.fakes import FakeEmbedder
from tests.generation.fakes import ScriptedGenerator
from tests.helpers import LOCAL_URL, text_doc

PUMP = "The blue pump moves water uphill to the Brannock reservoir."


def _answer(messages: list[dict[str, str]]) -> str:
    question = messages[-1]["content"].rsplit("Question:", 1)[-1]
    if "rude" in question:
        return "The blue pump is bullshit [1]."
    if "colour" in question:
        return "Purple elephants dance on Tuesdays [1]."
    return "The blue pump moves water uphill [1]."


def _client(tmp_path: Path, **options: Any) -> tuple[Services, TestClient]:
    settings = Settings(data_dir=tmp_path / "data", min_score=0.2, chunk_size=64, chunk_overlap=8,
                        generator="scripted", answer_style="span", answerability=False, **options)
    svc = Services(settings, embedder=FakeEmbedder(), generator=ScriptedGenerator(_answer))
    svc.create_collection("kb")
    IngestPipeline.for_collection(svc.collection("kb"), svc.embedder).run(
        [text_doc("pumps.md", f"# Pumps\n\n{PUMP}", "md")])
    return svc, TestClient(create_app(settings, svc), base_url=LOCAL_URL)


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    opened: list[tuple[Services, TestClient]] = []

    def make(**options: Any) -> tuple[Services, TestClient]:
        svc, client = _client(tmp_path / str(len(opened)), **options)
        client.__enter__()
        opened.append((svc, client))
        return svc, client
    yield make
    for svc, client in opened:
        client.__exit__(None, None, None)
        svc.close()


def ask(client: TestClient, question: str, **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/collections/kb/ask", json={"question": question, **extra})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_by_default_every_answer_carries_the_screens_verdicts(make: Any) -> None:
    _, client = make()
    body = ask(client, "what does the blue pump do?")
    screening = body["screening"]
    assert screening["action"] == "flag" and screening["screen"] == "wordlist"
    assert not screening["flagged"] and screening["answer"]["flagged"] is False
    body = ask(client, "what the fuck does the blue pump do?")
    assert body["screening"]["question"]["terms"] == ["fuck"] and not body["refused"]
    assert "blue pump" in body["answer"], "flag only reports"


def test_refuse_never_asks_the_model_an_offensive_question(make: Any) -> None:
    svc, client = make(screen="refuse")
    body = ask(client, "what the fuck does the blue pump do?")
    assert body["refused"] and body["answer"] == QUESTION_REFUSAL
    assert body["refusal_reason"] == "offensive_question" and body["screening"]["changed"]
    assert svc.serving.generator.calls == []  # type: ignore[attr-defined]
    body = ask(client, "is the blue pump rude?")
    assert body["refused"] and body["answer"] == ANSWER_REFUSAL and body["citations"] == []
    assert body["screening"]["answer"]["flagged"]


def test_redact_masks_the_answer_in_json_and_in_the_stream(make: Any) -> None:
    _, client = make(screen="redact")
    body = ask(client, "is the blue pump rude?")
    assert body["answer"] == f"The blue pump is {MASK} [1]." and not body["refused"]
    r = client.post("/v1/collections/kb/ask", json={"question": "is the blue pump rude?",
                                                    "stream": True})
    events = [b for b in r.text.strip().split("\n\n")]
    tokens = [json.loads(b.split("data: ", 1)[1])["text"] for b in events if "event: token" in b]
    done = json.loads(events[-1].split("data: ", 1)[1])
    assert tokens == [body["answer"]], "held back, then sent whole"
    assert done["screening"]["changed"] and done["answer"] == body["answer"]


def test_strict_mode_per_request(make: Any) -> None:
    _, client = make(screen="off")
    loose = ask(client, "what colour is the blue pump?")
    assert not loose["refused"] and not loose["grounded"] and loose["screening"] is None
    strict = ask(client, "what colour is the blue pump?", strict=True)
    assert strict["refused"] and "not supported" in strict["refusal_reason"]
    _, client = make(refuse_ungrounded=True)
    assert not ask(client, "what colour is the blue pump?", strict=False)["refused"]


def test_chat_completions_carry_the_verdicts_streamed_or_not(make: Any) -> None:
    _, client = make(screen="refuse")
    msgs = [{"role": "user", "content": "is the blue pump rude?"}]
    body = client.post("/v1/chat/completions", json={"model": "kb", "messages": msgs}).json()
    assert body["choices"][0]["message"]["content"] == ANSWER_REFUSAL
    assert body["ragtune"]["screening"]["answer"]["flagged"]
    r = client.post("/v1/chat/completions", json={"model": "kb", "messages": msgs, "stream": True})
    chunks = [json.loads(line[6:]) for line in r.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == ANSWER_REFUSAL
    assert chunks[-1]["ragtune"]["screening"]["flagged"]
    plain = [{"role": "user", "content": "shit, what does the blue pump do?"}]
    body = client.post("/v1/chat/completions", json={"model": "scripted", "messages": plain}).json()
    assert body["choices"][0]["message"]["content"] == QUESTION_REFUSAL
    assert body["ragtune"]["screening"]["question"]["terms"] == ["shit"]
    body = client.post("/v1/chat/completions", json={"model": "kb", "messages": [
        {"role": "user", "content": "what colour is the blue pump?"}], "strict": True}).json()
    assert body["ragtune"]["refused"]


def test_guard_routes_say_which_screen_check_texts_and_screen_a_dataset(make: Any) -> None:
    _, client = make(screen="off")
    info = client.get("/v1/guard").json()
    assert info["action"] == "off" and info["screen"] == "wordlist"
    assert "word list alone" in info["note"]
    r = client.post("/v1/guard/check", json={"texts": ["fine words", "bullshit. Fine."]})
    assert [v["flagged"] for v in r.json()["verdicts"]] == [False, True]
    assert r.json()["redacted"] == ["fine words", f"{MASK}. Fine."]
    assert client.post("/v1/guard/check", json={}).status_code == 422
    rows = [{"messages": [{"role": "user", "content": "hi"},
                          {"role": "assistant", "content": m}]} for m in ("hello", "bullshit")]
    data = "\n".join(json.dumps(r) for r in rows) + "\n"
    stored = client.post("/v1/tuning/datasets", files={"file": ("chat.jsonl", data.encode())})
    assert stored.status_code == 201, stored.text
    report = client.post(f"/v1/guard/datasets/{stored.json()['id']}").json()
    assert report["records"] == 2 and report["flagged_records"] == 1
    assert report["flagged"][0]["line"] == 2 and report["flagged"][0]["field"] == \
        "messages[1].content"
    assert client.post("/v1/guard/datasets/nope").status_code == 404


def test_cli_guard_check_and_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(cli_guard, "_services", lambda s: Services(s, embedder=FakeEmbedder()))
    assert cli.main(["guard", "check", "all fine", "what bullshit"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ok\t") and out[1].startswith("FLAGGED\t")
    assert out[2] == f"\tredacted: what {MASK}"
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "fine"}\n{"text": "bullshit"}\n')
    assert cli.main(["guard", "dataset", str(data)]) == 1
    assert "1 of 2 records flagged" in capsys.readouterr().out
    data.write_text('{"text": "fine"}\n')
    assert cli.main(["guard", "dataset", str(data)]) == 0
    assert cli.main(["guard", "info"]) == 0
    assert "screen wordlist" in capsys.readouterr().out


def test_tune_start_screen_stops_before_training_on_flagged_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(cli_guard, "_services", lambda s: Services(s, embedder=FakeEmbedder()))
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "bullshit"}]}) + "\n")
    assert cli.main(["tune", "start", "--data-path", str(data), "--name", "x", "--local",
                     "--screen"]) == 1
    out = capsys.readouterr().out
    assert "line 1\tmessages[1].content" in out and "not training" in out
    assert not (tmp_path / "data" / "tuning").exists() or \
        not list((tmp_path / "data" / "tuning").rglob("*.jsonl")), "nothing was stored or queued"
