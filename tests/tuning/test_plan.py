"""TuningDesk.plan: one place turns a job request (HTTP or CLI) into the JobSpec that is queued;
submit plans the run from the data (tuning.sizing) and refuses what could not be served."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from generation.adapter_registry import AdapterRegistry
from tuning.base import TrainResult
from tuning.errors import InvalidConfig
from tuning.jobs import JobRequest, JobSpec
from tuning.service import TuningDesk
from tuning.sizing import MIN_STEPS, RunPlan
from tuning.worker import Hooks, JobExecutor


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


def _stored(desk: TuningDesk, tmp_path: Path, n: int) -> str:
    rows = [{"instruction": f"Say {i}.", "output": f"{i}.\n\n-- done"} for i in range(n)]
    path = tmp_path / "behaviour.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(desk.add_dataset(path).id)


def test_submit_plans_the_run_and_the_worker_trains_the_plan(base_model: Path, tmp_path: Path) -> None:
    desk = TuningDesk(tmp_path / "tuning", AdapterRegistry(tmp_path / "adapters"), "cpu")
    ds = _stored(desk, tmp_path, 40)
    job = desk.submit(JobSpec(name="marker", dataset_id=ds, model=str(base_model)))
    plan = RunPlan(**job.spec.plan)
    assert (plan.examples, plan.steps, plan.lr) == (36, MIN_STEPS, 1e-3)  # 10 % held out
    assert plan.budget_minutes == 10 and "(assumed" in plan.rate_source
    config = JobExecutor(desk.store, desk.datasets, desk.adapters, desk.runs_root,
                         Hooks(load_model=lambda _: None)).config(desk.store.get(job.id))
    assert (config.max_steps, config.lr, config.batch_size * config.grad_accum,
            config.time_budget) == (MIN_STEPS, 1e-3, 4, "600s")

    desk.store.finish(job.id, "succeeded", result={"train": {"tokens_per_s": 123.0}})
    given = desk.submit(JobSpec(name="given", dataset_id=ds, model=str(base_model),
                                train={"lr": 3e-4, "max_steps": 5}))
    plan = RunPlan(**given.spec.plan)
    assert (plan.steps, plan.lr, plan.tokens_per_s) == (5, 3e-4, 123.0)
    assert "measured" in plan.rate_source and "unlikely to learn" in plan.warnings[0]


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_prefix_and_prompt_tuning_are_refused_at_submit(method: str, tmp_path: Path) -> None:
    desk = TuningDesk(tmp_path / "tuning", AdapterRegistry(tmp_path / "adapters"), "cpu")
    with pytest.raises(InvalidConfig, match=f"method '{method}' is refused: .* cannot load"):
        desk.submit(JobSpec(name="p", dataset_id=_stored(desk, tmp_path, 4), model="m",
                            method=method))
    assert desk.store.list() == []


def _served(base_model: Path, tokenizer: object, lora_dir: Path, tmp_path: Path) -> AdapterRegistry:
    """A registry serving the LoRA adapter `lora_dir` (trained on `base_model`) as "served"."""
    from tuning.config import TrainConfig

    adapters = AdapterRegistry(tmp_path / "adapters")
    trained = TrainConfig(model=str(base_model), data_path="-", output_dir="-")
    adapters.register("served", lora_dir, base_model, tokenizer, trained, "0" * 64, {})
    adapters.set_active("served")
    return adapters


def test_a_run_starts_from_the_served_adapter_and_mixes_in_examples(
        base_model: Path, tokenizer: object, lora_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    adapters = _served(base_model, tokenizer, lora_dirs[0], tmp_path)
    desk = TuningDesk(tmp_path / "tuning", adapters, "cpu")
    ds = _stored(desk, tmp_path, 40)
    mix = desk.add_dataset(tmp_path / "behaviour.jsonl").id
    job = desk.submit(JobSpec(name="stacked", dataset_id=ds, model=str(base_model), mix_dataset_id=mix))
    plan = RunPlan(**job.spec.plan)
    assert (plan.stacked_on, plan.init_adapter) == ("served", str(adapters.get("served").path))
    assert (plan.examples, plan.mixed) == (48, 12)  # 36 own + a quarter of the split mixed in
    assert "starting from the served adapter served" in plan.line() and not plan.warnings
    config = JobExecutor(desk.store, desk.datasets, adapters, desk.runs_root,
                         Hooks(load_model=lambda _: None)).config(job)
    assert config.init_adapter == plan.init_adapter and config.mix_path == str(desk.datasets.path(mix))

    alone = desk.submit(JobSpec(name="alone", dataset_id=ds, model=str(base_model)))
    assert any("may be lost" in w and "mix_dataset_id" in w for w in alone.spec.plan["warnings"])
    assert alone.spec.plan["mixed"] == 0  # the served adapter carries no keep set
    fresh = desk.submit(JobSpec(name="fresh", dataset_id=ds, model=str(base_model),
                                train={"init_adapter": ""}))
    assert fresh.spec.plan["stacked_on"] is None and not fresh.spec.plan["warnings"]
    with pytest.raises(InvalidConfig, match="init_adapter 'nope' is not a registered adapter"):
        desk.submit(JobSpec(name="x", dataset_id=ds, model=str(base_model),
                            train={"init_adapter": "nope"}))


def test_a_run_on_an_adapter_with_a_keep_set_mixes_it_in_by_default(
        base_model: Path, tokenizer: object, lora_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    from generation.adapter_registry import KEEP_SET

    adapters = _served(base_model, tokenizer, lora_dirs[0], tmp_path)
    keep = adapters.get("served").path / KEEP_SET
    keep.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Passages ... question {i}?"},
        {"role": "assistant", "content": f"{i} [1]"}]}) + "\n" for i in range(5)))
    desk = TuningDesk(tmp_path / "tuning", adapters, "cpu")
    ds = _stored(desk, tmp_path, 40)
    job = desk.submit(JobSpec(name="kept", dataset_id=ds, model=str(base_model)))
    plan = RunPlan(**job.spec.plan)
    assert (plan.examples, plan.mixed) == (41, 5)  # 36 own + the whole keep set (a share of 0.3 wanted 15)
    assert plan.keep_set == str(keep) and "5 of them mixed in from the keep set of served" in plan.line()
    assert not any("may be lost" in w for w in plan.warnings)
    config = JobExecutor(desk.store, desk.datasets, adapters, desk.runs_root,
                         Hooks(load_model=lambda _: None)).config(job)
    assert config.mix_path == str(keep) and config.init_adapter == plan.init_adapter

    class Copies:  # a trainer that "trains" by copying the served adapter's weights
        def train(self, config: object, on_progress: object = None,
                  should_stop: object = None) -> TrainResult:
            out = Path(config.output_dir)  # type: ignore[attr-defined]
            shutil.copytree(lora_dirs[0], out / "adapter")
            return TrainResult(output_dir=out, adapter_dir=out / "adapter", steps=1, train_loss=1.0,
                               eval_loss=None, train_tokens=10, seconds=0.1, tokens_per_s=100.0,
                               peak_rss_mb=1.0)

    JobExecutor(desk.store, desk.datasets, adapters, desk.runs_root,
                Hooks(load_model=lambda _: None, trainer=lambda _: Copies())).run(job)
    assert desk.store.get(job.id).state == "succeeded"
    # the new adapter carries the keep set on, and is known to keep what "served" did
    assert (adapters.get("kept").path / KEEP_SET).read_text() == keep.read_text()
    assert adapters.keeps("kept") == ["served"]

    off = desk.submit(JobSpec(name="off", dataset_id=ds, model=str(base_model),
                              train={"mix_share": 0}))
    assert off.spec.plan["mixed"] == 0 and off.spec.plan["keep_set"] is None
    assert any("may be lost" in w for w in off.spec.plan["warnings"])
    fresh = desk.submit(JobSpec(name="fresh", dataset_id=ds, model=str(base_model),
                                train={"init_adapter": ""}))
    assert fresh.spec.plan["mixed"] == 0  # a fresh adapter has nothing to keep
