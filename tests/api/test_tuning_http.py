"""Tuning over HTTP only, with real SmolLM2 training in real worker processes: upload, start, follow,
succeed; a malformed dataset refused with its line number; a killed worker leaves the API serving and
the job resumable."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from api.settings import Settings
from tests.conftest import ImportedModel
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL

ROWS = [{"instruction": f"Name item {i}.", "output": f"Item {i}. Sources: [1]"} for i in range(10)]
TINY = {"max_steps": 2, "batch_size": 1, "grad_accum": 1, "model_max_length": 48,
        "val_fraction": 0.2, "lora_r": 4, "lora_alpha": 8, "num_threads": 1}
CANCEL_BOUND_S = 15.0  # every phase: runner poll + SIGKILL grace + reaping, with room


@pytest.fixture
def client(tmp_path: Path, imported_model: ImportedModel) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", generator=str(imported_model.path))
    app = create_app(settings, Services(settings, embedder=FakeEmbedder()))
    with TestClient(app, base_url=LOCAL_URL) as c:
        yield c


def jsonl(rows: list[Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def wait_for(client: TestClient, job_id: str, until: Any, timeout: float = 240) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/tuning/jobs/{job_id}").json()
        if until(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} never got there: {job}")


def test_upload_start_follow_succeed(client: TestClient) -> None:
    up = client.post("/v1/tuning/datasets", files={"file": ("behaviour.jsonl", jsonl(ROWS))})
    assert up.status_code == 201, up.text
    assert (up.json()["format"], up.json()["records"]) == ("alpaca", 10)
    r = client.post("/v1/tuning/jobs", json={
        "name": "cite", "dataset_id": up.json()["id"], "config": TINY,
        "checks": {"regex": r"Sources: \[\d+\]"}, "gate_prompts": 2, "gate_max_new_tokens": 4})
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    assert r.json()["state"] in ("queued", "running")
    with client.stream("GET", f"/v1/tuning/jobs/{job_id}/logs") as stream:
        events = [line for line in stream.iter_lines() if line.startswith("event: ")]
    assert "event: progress" in events and events[-1] == "event: end"
    assert "event: log" in events  # training.log lines came through
    job = client.get(f"/v1/tuning/jobs/{job_id}").json()
    assert job["state"] == "succeeded", job
    assert (job["step"], job["total_steps"], job["progress"]) == (2, 2, 1.0)
    assert job["loss"] is not None and job["eval_loss"] is not None
    train = job["result"]["train"]
    assert train["steps"] == 2 and train["train_tokens"] > 0
    gate = job["result"]["gate"]
    assert gate["prompts"] == 2 and {"base", "tuned", "better", "reason"} <= set(gate)
    assert job["result"]["adapter"] == "cite" and job["result"]["promote"] is False
    assert [j["job_id"] for j in client.get("/v1/tuning/jobs").json()] == [job_id]
    # the same name again: refused before anything is queued
    again = client.post("/v1/tuning/jobs", json={"name": "cite", "dataset_id": up.json()["id"]})
    assert again.status_code == 422 and "already exists" in again.json()["detail"]


def test_malformed_dataset_is_refused_before_training_with_the_line(client: TestClient) -> None:
    bad = jsonl(ROWS[:3]) + b'{"instruction": "no answer"}\n{not json\n'
    r = client.post("/v1/tuning/jobs", files={"file": ("bad.jsonl", bad)},
                    data={"config": json.dumps({"name": "bad", "config": TINY})})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_dataset"
    assert [p["line"] for p in body["problems"]] == [4, 5]
    assert "line 4" in body["detail"] and "output" in body["detail"]
    assert body["detail"].startswith("bad.jsonl")
    assert client.get("/v1/tuning/jobs").json() == []
    r = client.post("/v1/tuning/jobs", json={"name": "x", "dataset_id": "0" * 16})
    assert r.status_code == 404
    r = client.post("/v1/tuning/jobs", json={"name": "x", "dataset_id": "0" * 16, "bogus": 1})
    assert r.status_code == 422 and "bogus" in r.json()["detail"]


def test_killing_the_worker_leaves_the_api_serving_and_the_job_resumable(client: TestClient) -> None:
    config = {**TINY, "max_steps": 4, "save_steps": 1}
    r = client.post("/v1/tuning/jobs", files={"file": ("d.jsonl", jsonl(ROWS))},
                    data={"config": json.dumps({"name": "killme", "config": config})})
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    job = wait_for(client, job_id, lambda j: j["step"] >= 1 and j["pid"])
    os.kill(job["pid"], signal.SIGKILL)
    job = wait_for(client, job_id, lambda j: j["state"] != "running", timeout=30)
    assert job["state"] == "interrupted" and job["resumable"], job
    assert "SIGKILL" in job["error"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/tuning/jobs").status_code == 200
    killed_at = job["step"]
    r = client.post(f"/v1/tuning/jobs/{job_id}/resume")
    assert r.status_code == 200 and r.json()["state"] == "queued"
    job = wait_for(client, job_id, lambda j: j["state"] not in ("queued", "running"))
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2 and job["result"]["train"]["steps"] == 4
    log = (Path(client.app.state.services.tuning.runs_root) / job_id / "training.log").read_text()
    steps = [int(line.split()[0].split("=")[1].split("/")[0]) for line in log.splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 4 and min(steps) <= killed_at
    # a finished job cannot be cancelled or resumed
    assert client.post(f"/v1/tuning/jobs/{job_id}/cancel").status_code == 409
    assert client.post(f"/v1/tuning/jobs/{job_id}/resume").status_code == 409


def start_job(client: TestClient, name: str, config: dict[str, Any], **job: Any) -> str:
    r = client.post("/v1/tuning/jobs", files={"file": ("d.jsonl", jsonl(ROWS))},
                    data={"config": json.dumps({"name": name, "config": config, **job})})
    assert r.status_code == 201, r.text
    return str(r.json()["job_id"])


def cancel_within_bound(client: TestClient, job_id: str) -> dict[str, Any]:
    """Cancel the running job: its state is final, and its worker gone, within CANCEL_BOUND_S."""
    pid = client.get(f"/v1/tuning/jobs/{job_id}").json()["pid"]
    started = time.monotonic()
    assert client.post(f"/v1/tuning/jobs/{job_id}/cancel").json()["cancel_requested"]
    job = wait_for(client, job_id, lambda j: j["state"] != "running", timeout=CANCEL_BOUND_S)
    while pid and time.monotonic() - started < CANCEL_BOUND_S:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    assert time.monotonic() - started < CANCEL_BOUND_S, "the worker outlived the bound"
    return job


def adapters(client: TestClient) -> list[str]:
    return [a["name"] for a in client.get("/v1/adapters").json()["adapters"]]


def test_cancel_while_loading_ends_within_seconds(client: TestClient) -> None:
    job_id = start_job(client, "early", {**TINY, "max_steps": 50})
    wait_for(client, job_id, lambda j: j["phase"] == "loading")
    job = cancel_within_bound(client, job_id)
    assert job["state"] == "cancelled" and job["resumable"] and job["step"] == 0, job


def test_cancel_mid_step_keeps_the_last_step_and_resumes(client: TestClient) -> None:
    job_id = start_job(client, "long", {**TINY, "max_steps": 3, "grad_accum": 6, "save_steps": 1})
    wait_for(client, job_id, lambda j: j["step"] >= 1)
    job = cancel_within_bound(client, job_id)
    assert job["state"] == "cancelled" and job["step"] < 3, job
    runs = Path(client.app.state.services.tuning.runs_root) / job_id / "checkpoints"
    assert (runs / f"step-{job['step']}").is_dir()
    assert "long" not in adapters(client)
    assert client.post(f"/v1/tuning/jobs/{job_id}/resume").json()["state"] == "queued"
    job = wait_for(client, job_id, lambda j: j["state"] not in ("queued", "running"))
    assert job["state"] == "succeeded" and job["result"]["train"]["steps"] == 3, job


def test_cancel_during_the_gate_ends_within_seconds_and_registers_nothing(client: TestClient) -> None:
    job_id = start_job(client, "gated", {**TINY, "max_steps": 1}, checks={"regex": "Sources"},
                       gate_prompts=50, gate_max_new_tokens=96)
    wait_for(client, job_id, lambda j: (j["phase"] or "").startswith("gate"))
    job = cancel_within_bound(client, job_id)
    assert job["state"] == "cancelled", job
    assert "gated" not in adapters(client)


def test_linear_probe_job_then_predict(tmp_path: Path, real_embedder: Any) -> None:
    pos = ["I loved this film, wonderful acting", "great food and friendly staff", "a delightful, happy day",
           "excellent service, I am very pleased", "what a fantastic and beautiful concert",
           "superb quality, highly recommended"]
    neg = ["I hated this film, awful acting", "terrible food and rude staff", "a miserable, sad day",
           "dreadful service, I am very angry", "what a horrible and ugly concert",
           "poor quality, do not buy"]
    rows = "text,label\n" + "".join(f'"{t}",positive\n' for t in pos) + \
        "".join(f'"{t}",negative\n' for t in neg)
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(settings, Services(settings, embedder=real_embedder))
    with TestClient(app, base_url=LOCAL_URL) as client:
        bad = client.post("/v1/tuning/jobs", files={"file": ("s.csv", b"text,label\nfine,\n")},
                          data={"config": json.dumps({"name": "s", "method": "linear_probe"})})
        assert bad.status_code == 422 and bad.json()["problems"][0]["line"] == 2
        assert bad.json()["detail"].startswith("s.csv")
        r = client.post("/v1/tuning/jobs", files={"file": ("s.csv", rows.encode())},
                        data={"config": json.dumps({"name": "sentiment", "method": "linear_probe",
                                                    "config": {"val_fraction": 0.25}})})
        assert r.status_code == 201, r.text
        job = wait_for(client, r.json()["job_id"], lambda j: j["state"] not in ("queued", "running"))
        assert job["state"] == "succeeded", job
        assert job["result"]["classifier"] == "sentiment"
        pred = client.post("/v1/classifiers/sentiment/predict",
                           json={"texts": ["an awful, horrible meal", "a wonderful, lovely evening"]})
        assert pred.status_code == 200, pred.text
        assert [p["label"] for p in pred.json()["predictions"]] == ["negative", "positive"]


@pytest.mark.parametrize("base", ["/etc", "HuggingFaceTB/SmolLM2-135M"])
def test_http_jobs_train_only_on_registered_models(client: TestClient, base: str) -> None:
    up = client.post("/v1/tuning/datasets", files={"file": ("b.jsonl", jsonl(ROWS))})
    r = client.post("/v1/tuning/jobs", json={"name": "x", "dataset_id": up.json()["id"],
                                             "base_model": base, "config": TINY})
    assert r.status_code == 422, r.text
    assert "not a registered model" in r.json()["detail"]
    assert client.get("/v1/tuning/jobs").json() == []
