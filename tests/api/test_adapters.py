"""/v1/adapters and per-request adapters on ask and chat, served by the real SmolLM2 (fp32) with
random LoRA adapters built by the test, so hot swaps visibly change greedy output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import generation.loading
from api.app import create_app
from api.services import Services
from api.settings import Settings
from generation.adapter_registry import AdapterRegistry
from ingest.pipeline import IngestPipeline
from tests.conftest import ImportedModel
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL, text_doc
from tuning.config import TrainConfig

QUESTION = {"question": "What does the blue pump move?", "max_new_tokens": 6}


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every base-model load the services make."""
    calls: list[str] = []
    real = generation.loading.load_model

    def counting(path: str, config: generation.loading.LoadConfig) -> Any:
        calls.append(path)
        return real(path, config)

    monkeypatch.setattr(generation.loading, "load_model", counting)
    return calls


@pytest.fixture
def services(tmp_path: Path, imported_model: ImportedModel,
             lora_dirs: tuple[Path, Path]) -> Iterator[Services]:
    from transformers import AutoTokenizer

    settings = Settings(data_dir=tmp_path / "data", generator=str(imported_model.path),
                        quantization="fp32", device="cpu", min_score=-1.0, chunk_size=64,
                        chunk_overlap=8, span_decoding=False,  # random adapters: free text
                        answer_style="span")
    svc = Services(settings, embedder=FakeEmbedder())
    tokenizer = AutoTokenizer.from_pretrained(str(imported_model.path))
    config = TrainConfig(model=str(imported_model.path), data_path="d.jsonl",
                         output_dir=str(tmp_path / "run"))
    svc.adapters.register("tone", lora_dirs[0], imported_model.path, tokenizer, config, "d1",
                          {"eval_loss": 1.5})
    svc.adapters.register("tone-2", lora_dirs[1], imported_model.path, tokenizer, config, "d2", {})
    elsewhere = tmp_path / "other-base"
    elsewhere.mkdir()
    (elsewhere / "model.safetensors").write_bytes(b"not the served weights")
    svc.adapters.register("elsewhere", lora_dirs[0], elsewhere, tokenizer, config, "d3", {})
    svc.create_collection("kb")
    IngestPipeline.for_collection(svc.collection("kb"), svc.embedder).run(
        [text_doc("pumps.md", "# Pumps\n\nThe blue pump moves water uphill to the reservoir.")])
    yield svc
    svc.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services.settings, services), base_url=LOCAL_URL) as c:
        yield c


def _ask(client: TestClient, **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/collections/kb/ask", json={**QUESTION, **extra})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_hot_swap_changes_output_without_reloading_the_base(
        client: TestClient, services: Services, loads: list[str]) -> None:
    base = _ask(client)
    assert base["adapter"] is None and base["answer"]
    gen: Any = services.serving.generator
    weight = gen.loaded.model.model.layers[0].self_attn.q_proj.weight

    r = client.post("/v1/adapters/tone/activate")
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True and r.json()["loaded"] is True
    tuned = _ask(client)
    assert tuned["adapter"] == "tone" and tuned["answer"] != base["answer"]
    again = _ask(client, adapter="base")
    assert again["adapter"] is None and again["answer"] == base["answer"]

    # a training worker promotes another adapter from its own process: seen on the next request
    AdapterRegistry(services.adapters.root).set_active("tone-2")
    other = _ask(client)
    assert other["adapter"] == "tone-2" and other["answer"] not in (base["answer"], tuned["answer"])

    assert loads == [str(services.settings.generator)], "the base model was loaded once"
    assert services.serving.generator is gen and gen.adapters == ("tone", "tone-2")
    assert gen.loaded.model.model.layers[0].self_attn.q_proj.base_layer.weight is weight
    listed = client.get("/v1/adapters").json()
    flags = {a["name"]: (a["active"], a["loaded"]) for a in listed["adapters"]}
    assert listed["active"] == "tone-2"
    assert flags == {"tone": (False, True), "tone-2": (True, True), "elsewhere": (False, False)}


def test_chat_and_stream_name_the_adapter(client: TestClient, services: Services) -> None:
    model = services.settings.generator
    chat = {"model": model, "max_tokens": 6,
            "messages": [{"role": "user", "content": "Name three colours of the rainbow."}]}
    base = client.post("/v1/chat/completions", json=chat).json()
    assert set(base.get("ragtune", {})) == {"screening"}, "no adapter named; the screen's verdicts"
    tuned = client.post("/v1/chat/completions", json={**chat, "adapter": "tone"}).json()
    assert tuned["ragtune"]["adapter"] == "tone" and tuned["model"] == model
    assert (tuned["choices"][0]["message"]["content"]
            != base["choices"][0]["message"]["content"])

    r = client.post("/v1/collections/kb/ask", json={**QUESTION, "stream": True, "adapter": "tone"})
    done = [json.loads(block.split("data: ", 1)[1]) for block in r.text.strip().split("\n\n")
            if block.startswith("event: done")]
    assert done and done[0]["adapter"] == "tone"


def test_wrong_base_unknown_and_active_adapters_are_refused(
        client: TestClient, services: Services, loads: list[str]) -> None:
    r = client.post("/v1/adapters/elsewhere/activate")
    assert r.status_code == 409 and r.json()["error"] == "adapter_mismatch"
    assert "trained on base 'other-base'" in r.json()["detail"]
    assert client.post("/v1/collections/kb/ask",
                       json={**QUESTION, "adapter": "elsewhere"}).status_code == 409
    assert services.adapters.active() is None

    for r in (client.post("/v1/adapters/nope/activate"), client.get("/v1/adapters/nope"),
              client.post("/v1/collections/kb/ask", json={**QUESTION, "adapter": "nope"}),
              client.post("/v1/chat/completions", json={
                  "model": services.settings.generator, "adapter": "nope",
                  "messages": [{"role": "user", "content": "hi"}]})):
        assert r.status_code == 404 and r.json()["error"] == "adapter_not_found", r.text

    r = client.post("/v1/adapters/tone/activate")
    assert r.status_code == 200 and r.json()["loaded"] is False, "loaded on first use"
    assert Services(services.settings).adapters.active() == "tone", "kept across a restart"
    r = client.delete("/v1/adapters/tone")
    assert r.status_code == 409 and "deactivate" in r.json()["detail"]
    assert client.post("/v1/adapters/deactivate").json()["active"] is None
    assert client.delete("/v1/adapters/tone").status_code == 204
    assert client.get("/v1/adapters/tone").status_code == 404
    assert loads == [], "activating checks the base on disk; it does not load the model"


def test_a_job_whose_gate_passed_promotes_its_adapter(services: Services) -> None:
    from tuning.jobs import JobSpec, TuningJob

    def finished(name: str, state: str, promote: bool) -> TuningJob:
        return TuningJob(id="j", name=name, state=state, spec=JobSpec(name=name, dataset_id="0" * 16),
                         result={"adapter": name, "promote": promote})

    promote = services.tuning_runner.on_finished
    assert promote is not None
    promote(finished("tone", "succeeded", promote=False))
    assert services.adapters.active() is None
    promote(finished("tone", "failed", promote=True))
    assert services.adapters.active() is None
    promote(finished("tone", "succeeded", promote=True))
    assert services.adapters.active() == "tone"
    with pytest.raises(Exception, match="elsewhere"):  # the serving base's check still applies
        promote(finished("elsewhere", "succeeded", promote=True))
    assert services.adapters.active() == "tone"


def _shipped(root: Path, record_dir: Path, name: str) -> None:
    import shutil

    shutil.copytree(record_dir, root / name)
    meta = root / name / "ragtune_adapter.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "name": name}))


def test_prepare_installs_the_packaged_adapters_and_serves_the_default_once(
        services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import generation.serving

    shipped = tmp_path / "packaged"
    shipped.mkdir()
    _shipped(shipped, services.adapters.get("tone").path, "shipped")
    _shipped(shipped, services.adapters.get("elsewhere").path, "shipped-elsewhere")
    monkeypatch.setattr(generation.serving, "PACKAGED_ADAPTERS", shipped)

    def fresh(data: str, default: str) -> Services:
        settings = services.settings.model_copy(update={"data_dir": tmp_path / data,
                                                        "default_adapter": default})
        return Services(settings, embedder=FakeEmbedder())

    svc = fresh("fresh", "shipped")
    done = svc.serving.install_packaged(svc.settings.default_adapter)
    assert "installed adapter shipped" in done and svc.adapters.active() == "shipped"
    assert {r.name for r in svc.adapters.list()} == {"shipped", "shipped-elsewhere"}
    svc.serving.deactivate()  # the user's choice of the base is kept by the next prepare
    assert svc.serving.install_packaged(svc.settings.default_adapter) == [] and svc.adapters.active() is None

    other = fresh("other", "shipped-elsewhere")  # trained on another base: the base is served
    done = other.serving.install_packaged(other.settings.default_adapter)
    assert other.adapters.active() is None
    assert any(line.startswith("serving the base model") for line in done), done
