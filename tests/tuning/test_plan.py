"""TuningDesk.plan: one place turns a job request (HTTP or CLI) into the JobSpec that is queued."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.adapter_registry import AdapterRegistry
from tuning.jobs import JobRequest
from tuning.service import TuningDesk


class Calls:
    def __init__(self) -> None:
        self.models = 0
        self.collections: list[str] = []

    def model(self) -> str:
        self.models += 1
        return "/models/serving"

    def collection(self, name: str) -> object:
        if name != "kb":
            raise LookupError(f"no collection {name}")
        self.collections.append(name)
        return object()


@pytest.fixture
def desk(tmp_path: Path) -> tuple[TuningDesk, Calls]:
    calls = Calls()
    return TuningDesk(tmp_path / "tuning", AdapterRegistry(tmp_path / "adapters"), "cpu",
                      serving_model=calls.model, open_collection=calls.collection), calls


def test_defaults_are_filled_in_once(desk: tuple[TuningDesk, Calls]) -> None:
    planner, calls = desk
    spec = planner.plan(JobRequest(name="tone", dataset_id="d1", train={"max_steps": 3},
                                   checks={"max_chars": 80}))
    assert (spec.method, spec.model, spec.train) == ("lora", "/models/serving", {"max_steps": 3})
    assert spec.gate.max_chars == 80 and spec.gate.prompts == 50 and calls.models == 1


def test_a_named_model_and_a_probe_never_resolve_the_serving_model(
        desk: tuple[TuningDesk, Calls]) -> None:
    planner, calls = desk
    assert planner.plan(JobRequest(name="a", dataset_id="d", model="/m/other")).model == "/m/other"
    probe = planner.plan(JobRequest(name="p", dataset_id="d", method="linear_probe"))
    assert probe.model == "" and calls.models == 0


def test_the_eval_collection_is_opened_before_anything_is_queued(
        desk: tuple[TuningDesk, Calls]) -> None:
    planner, calls = desk
    with pytest.raises(LookupError, match="no collection other"):
        planner.plan(JobRequest(name="a", dataset_id="d", eval_collection="other",
                                eval_questions="q1"))
    spec = planner.plan(JobRequest(name="a", dataset_id="d", eval_collection="kb",
                                   eval_questions="q1"))
    assert calls.collections == ["kb"] and spec.gate.eval_questions == "q1"
    assert planner.store.list() == []  # planning queues nothing


def test_a_request_without_data_or_with_a_wrong_gate_is_refused(
        desk: tuple[TuningDesk, Calls]) -> None:
    planner, _ = desk
    with pytest.raises(ValueError, match="training data"):
        planner.plan(JobRequest(name="a", dataset_id=None))
    with pytest.raises(ValueError, match="unknown check"):
        planner.plan(JobRequest(name="a", dataset_id="d", checks={"colour": "red"}))
