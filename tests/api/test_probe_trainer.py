"""The Keras probe trainer from the edges: a tuning job with `"trainer": "keras"` over HTTP (its
worker process trains and registers the classifier), an unknown trainer refused before it queues, and
`ragtune classifiers train --trainer keras`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import cli, cli_classifiers
from api.app import create_app
from api.services import Services
from api.settings import Settings
from tests.api.test_tuning_http import wait_for
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL
from tuning.probe_fit import is_keras_available

pytestmark = pytest.mark.skipif(not is_keras_available(), reason="keras is not installed: pip install keras")

ROWS = "text,label\n" + "".join(f'"{t}",positive\n' for t in (
    "I loved this film, wonderful acting", "great food and friendly staff", "a delightful, happy day",
    "excellent service, I am very pleased")) + "".join(f'"{t}",negative\n' for t in (
    "I hated this film, awful acting", "terrible food and rude staff", "a miserable, sad day",
    "dreadful service, I am very angry"))


def test_a_keras_probe_job_over_http(tmp_path: Path, real_embedder: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings, Services(settings, embedder=real_embedder)),
                    base_url=LOCAL_URL) as client:
        bad = client.post("/v1/tuning/jobs", files={"file": ("s.csv", ROWS.encode())},
                          data={"config": json.dumps({"name": "s", "method": "linear_probe",
                                                      "config": {"trainer": "tensorflow"}})})
        assert bad.status_code == 422 and "must be one of sklearn, keras" in bad.json()["detail"]
        r = client.post("/v1/tuning/jobs", files={"file": ("s.csv", ROWS.encode())},
                        data={"config": json.dumps({"name": "mood", "method": "linear_probe",
                                                    "config": {"trainer": "keras", "val_fraction": 0}})})
        assert r.status_code == 201, r.text
        job = wait_for(client, r.json()["job_id"], lambda j: j["state"] not in ("queued", "running"))
        assert job["state"] == "succeeded", job
        record = client.get("/v1/classifiers/mood").json()
        assert record["metrics"]["trainer"] == "keras" and record["metrics"]["train_accuracy"] == 1.0
        pred = client.post("/v1/classifiers/mood/predict",
                           json={"texts": ["an awful, horrible meal", "a wonderful, lovely evening"]})
        assert [p["label"] for p in pred.json()["predictions"]] == ["negative", "positive"]


def test_classifiers_train_with_keras(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    embedder = FakeEmbedder()
    monkeypatch.setattr(cli_classifiers, "_services", lambda s: Services(s, embedder=embedder))
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "".join(f'"great lovely stay {i}",good\n' for i in range(6))
                    + "".join(f'"awful dirty stay {i}",bad\n' for i in range(6)))
    assert cli.main(["classifiers", "train", "reviews", "--data-path", str(data), "--trainer", "keras",
                     "--val-fraction", "0.25"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(out[out.index("{"):])
    assert metrics["trainer"] == "keras" and metrics["n_train"] == 9 and metrics["val_accuracy"] == 1.0
    with pytest.raises(SystemExit):  # argparse: not a choice
        cli.main(["classifiers", "train", "x", "--data-path", str(data), "--trainer", "tf"])
    assert "invalid choice: 'tf'" in capsys.readouterr().err
