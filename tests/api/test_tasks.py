"""/v1/tasks: the templates listed, one run with a scripted generator (with a passage, from a
collection, or by a linear-probe classifier), and inputs a template cannot take refused as JSON."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from api.settings import Settings
from generation.generator import Messages
from tests.fakes import FakeEmbedder
from tests.generation.fakes import ScriptedGenerator
from tests.helpers import LOCAL_URL
from tuning.probe import train_probe


def _reply(messages: Messages) -> str:
    user = messages[-1]["content"]
    if "Passage:" in user:
        return "Ada Moss\nand more" if "Ada" in user else "I do not know"
    return '{"name": "Li Wei", "age": 23}' if "Li Wei" in user else "Answer: negative"


@pytest.fixture
def gen() -> ScriptedGenerator:
    return ScriptedGenerator(_reply)


@pytest.fixture
def client(tmp_path: Path, gen: ScriptedGenerator) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", chunk_size=64, chunk_overlap=8)
    services = Services(settings, embedder=FakeEmbedder(), generator=gen)
    with TestClient(create_app(settings, services), base_url=LOCAL_URL) as c:
        yield c


def test_list_and_get(client: TestClient) -> None:
    listed = client.get("/v1/tasks").json()
    assert [t["name"] for t in listed] == ["qa", "sentiment", "translation", "coreference", "parsing",
                                           "summarisation"]
    sentiment = client.get("/v1/tasks/sentiment").json()
    assert sentiment["modes"] == ["zero_shot", "few_shot", "cot"] and sentiment["probe_trainable"]
    assert sentiment["choices"] == ["positive", "negative"] and sentiment["eval_items"] == 24
    assert client.get("/v1/tasks/coreference").json()["needs_target"]
    r = client.get("/v1/tasks/poetry")
    assert r.status_code == 404 and r.json()["error"] == "task_not_found"


def test_run_reads_the_reply(client: TestClient, gen: ScriptedGenerator) -> None:
    r = client.post("/v1/tasks/sentiment", json={"text": "The soup was cold.", "mode": "cot"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"] == "negative" and body["reply"] == "Answer: negative" and body["mode"] == "cot"
    assert "step by step" in gen.calls[-1][0]["content"]
    r = client.post("/v1/tasks/parsing", json={"text": "Li Wei, 23, is a student in Shanghai."})
    assert r.json()["output"] == {"name": "Li Wei", "age": 23}
    r = client.post("/v1/tasks/qa", json={"text": "Who founded it?", "context": "Ada Moss did."})
    assert r.json()["output"] == "Ada Moss"  # the first line only


def test_qa_over_a_collection_retrieves_the_passage(client: TestClient, gen: ScriptedGenerator,
                                                    tmp_path: Path) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    services.create_collection("kb")
    doc = tmp_path / "bakery.txt"
    doc.write_text("The bakery on Mill Street was founded by Ada Moss in 1990.")
    services.ingest_paths("kb", [doc])
    r = client.post("/v1/tasks/qa", json={"text": "Who founded the bakery?", "collection": "kb", "k": 1})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "Ada Moss" and r.json()["sources"] == ["bakery.txt"]
    assert "founded by Ada Moss" in gen.calls[-1][-1]["content"]


def test_a_classifier_answers_a_classification(client: TestClient, gen: ScriptedGenerator) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    texts = ["loved it great", "great lovely", "awful hated", "hated terrible"]
    probe, metrics = train_probe(texts, ["positive", "positive", "negative", "negative"],
                                 services.embedder, val_fraction=0.0, C=10.0)
    services.classifiers.save("mood", probe, metrics)
    r = client.post("/v1/tasks/sentiment", json={"text": "great, loved it", "classifier": "mood"})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "positive" and r.json()["mode"] == "linear_probe" and not gen.calls
    r = client.post("/v1/tasks/qa", json={"text": "x", "context": "y", "classifier": "mood"})
    assert r.status_code == 422 and "not a classification" in r.json()["detail"]


@pytest.mark.parametrize(("task", "body", "message"), [
    ("qa", {"text": "Who?"}, "needs a passage"),
    ("coreference", {"text": "A met B; he left.", "choices": ["A", "B"]}, "target"),
    ("sentiment", {"text": "x", "mode": "greedy"}, "mode"),
    ("sentiment", {"text": "x", "temperature": 1}, "temperature"),
    ("qa", {"text": "Who?", "collection": "nope"}, "nope"),
])
def test_bad_inputs_are_refused_before_the_model(client: TestClient, gen: ScriptedGenerator, task: str,
                                                 body: dict[str, object], message: str) -> None:
    r = client.post(f"/v1/tasks/{task}", json=body)
    assert r.status_code in (404, 422) and message in r.text
    assert not gen.calls
