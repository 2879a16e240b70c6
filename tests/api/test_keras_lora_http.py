"""A LoRA job with `"config": {"trainer": "keras"}` over HTTP on the packaged SmolLM2: its worker trains
on KerasHub's Llama, the exported peft adapter passes through the gate (served beside the base, as
serving does) and is registered; what KerasHub's LoRA cannot train is refused before it queues."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_tuning_http import ROWS, TINY, client, jsonl, wait_for  # noqa: F401 (fixture)
from tuning.keras_lora import is_keras_hub_available

pytestmark = pytest.mark.skipif(not is_keras_hub_available(),
                                reason="keras_hub is not importable: pip install 'ragtune[keras]'")


def test_a_keras_lora_job_trains_gates_and_registers(client: TestClient, tmp_path: Path) -> None:  # noqa: F811
    up = client.post("/v1/tuning/datasets", files={"file": ("behaviour.jsonl", jsonl(ROWS))}).json()
    bad = client.post("/v1/tuning/jobs", json={"name": "k", "dataset_id": up["id"],
                                               "config": {**TINY, "trainer": "keras", "packing": True}})
    assert bad.status_code == 422 and "--trainer keras" in bad.json()["detail"]
    r = client.post("/v1/tuning/jobs", json={
        "name": "cite-keras", "dataset_id": up["id"], "config": {**TINY, "trainer": "keras"},
        "checks": {"regex": r"Sources: \[\d+\]"}, "gate_prompts": 2, "gate_max_new_tokens": 4})
    assert r.status_code == 201, r.text
    job = wait_for(client, r.json()["job_id"], lambda j: j["state"] not in ("queued", "running"))
    assert job["state"] == "succeeded", job
    assert job["result"]["train"]["steps"] == 2 and job["result"]["gate"]["prompts"] == 2
    record = client.get("/v1/adapters/cite-keras").json()
    assert record["config"]["trainer"] == "keras" and record["method"] == "lora"
