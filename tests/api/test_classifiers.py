"""/v1/classifiers: list, get, predict (one text or many), delete; unknown names and wrong
embedders are JSON errors."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder
from tuning.probe import ClassifierRegistry, train_probe

POSITIVE = ["great service, loved it", "wonderful stay, loved the staff", "great food and lovely views",
            "loved it, wonderful and great"]
NEGATIVE = ["awful service, hated it", "terrible stay, rude staff", "awful food and dirty rooms",
            "hated it, terrible and awful"]


def _train(client: TestClient, name: str = "sentiment") -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    texts, labels = POSITIVE + NEGATIVE, ["pos"] * 4 + ["neg"] * 4
    probe, metrics = train_probe(texts, labels, services.embedder, val_fraction=0.0, C=10.0)
    services.classifiers.save(name, probe, metrics, dataset_hash="abc")


def test_list_get_predict_delete(client: TestClient) -> None:
    assert client.get("/v1/classifiers").json() == []
    _train(client)
    listed = client.get("/v1/classifiers").json()
    assert [c["name"] for c in listed] == ["sentiment"]
    one = client.get("/v1/classifiers/sentiment").json()
    assert one["labels"] == ["neg", "pos"] and one["embedder"] == "fake-bow"
    assert one["metrics"]["n_train"] == 8 and one["dataset_hash"] == "abc"

    r = client.post("/v1/classifiers/sentiment/predict",
                    json={"texts": ["loved it, great and wonderful", "awful and terrible, hated it"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["classifier"] == "sentiment"
    assert [p["label"] for p in body["predictions"]] == ["pos", "neg"]
    assert all(abs(sum(p["scores"].values()) - 1) < 1e-5 for p in body["predictions"])
    single = client.post("/v1/classifiers/sentiment/predict", json={"text": "loved it"}).json()
    assert len(single["predictions"]) == 1 and single["predictions"][0]["label"] == "pos"

    assert client.delete("/v1/classifiers/sentiment").status_code == 204
    assert client.get("/v1/classifiers/sentiment").status_code == 404


def test_errors_are_json(client: TestClient, tmp_path: Path) -> None:
    r = client.post("/v1/classifiers/nope/predict", json={"text": "hi"})
    assert r.status_code == 404 and r.json()["error"] == "classifier_not_found"
    assert client.delete("/v1/classifiers/nope").status_code == 404
    _train(client)
    r = client.post("/v1/classifiers/sentiment/predict", json={"text": "hi", "texts": ["hi"]})
    assert r.status_code == 422 and "either" in r.json()["detail"]
    assert client.post("/v1/classifiers/sentiment/predict", json={"texts": []}).status_code == 422

    # a classifier trained on another embedder's space is refused, not silently misused
    services = client.app.state.services  # type: ignore[attr-defined]
    other = FakeEmbedder(dim=32)
    other.name = "other-embedder"
    probe, metrics = train_probe(POSITIVE + NEGATIVE, ["pos"] * 4 + ["neg"] * 4, other, val_fraction=0)
    ClassifierRegistry(services.classifiers.root).save("foreign", probe, metrics)
    r = client.post("/v1/classifiers/foreign/predict", json={"text": "loved it"})
    assert r.status_code == 409 and "other-embedder" in r.json()["detail"]
    assert json.loads(r.text)["error"] == "embedder_mismatch"
