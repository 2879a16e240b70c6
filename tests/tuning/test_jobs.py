"""The tuning job queue, the dataset store, the front desk's checks and the gate's scoring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from generation.adapter_registry import AdapterRegistry
from tuning.dataset_store import DatasetNotFound, DatasetStore
from tuning.datasets import Sample
from tuning.errors import DatasetError, TuningError
from tuning.gate import BehaviourChecks, adherence, decide, prompts_of
from tuning.jobs import GateSpec, JobNotFound, JobSpec, JobStateError, JobStore
from tuning.service import TuningDesk


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite")


def spec(name: str = "a") -> JobSpec:
    return JobSpec(name=name, dataset_id="0" * 16, model="m")


def test_jobs_are_claimed_once_in_order(store: JobStore) -> None:
    first, second = store.create(spec("a")), store.create(spec("b"))
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == first.id and claimed.state == "running"
    assert claimed.attempts == 1
    again = store.claim_next()
    assert again is not None and again.id == second.id
    assert store.claim_next() is None


def test_spec_round_trips_through_the_table(store: JobStore) -> None:
    s = JobSpec(name="x", dataset_id="1" * 16, model="m", train={"lr": 1e-3, "max_steps": 3},
                gate=GateSpec(regex=r"\[\d\]$", prompts=7, promote_if_better=True))
    job = store.get(store.create(s).id)
    assert job.spec == s


def test_cancel_a_queued_job_ends_it_and_a_running_one_asks_it_to_stop(store: JobStore) -> None:
    queued = store.create(spec("q"))
    assert store.cancel(queued.id).state == "cancelled"
    running = store.create(spec("r"))
    store.claim_next()
    after = store.cancel(running.id)
    assert after.state == "running" and store.cancel_requested(running.id)
    store.finish(running.id, "cancelled")
    with pytest.raises(JobStateError, match="already cancelled"):
        store.cancel(running.id)


def test_only_finished_unsuccessful_jobs_can_be_resumed(store: JobStore) -> None:
    job = store.create(spec())
    with pytest.raises(JobStateError, match="is queued"):
        store.requeue(job.id)
    store.claim_next()
    store.finish(job.id, "interrupted", error="killed")
    again = store.requeue(job.id)
    assert again.state == "queued" and again.resume and again.error is None
    store.claim_next()
    store.finish(job.id, "succeeded", result={"ok": 1})
    with pytest.raises(JobStateError):
        store.requeue(job.id)
    with pytest.raises(JobNotFound):
        store.get("nope")


def test_recover_marks_jobs_whose_worker_is_gone_as_interrupted(store: JobStore) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lost, alive = store.create(spec("lost")), store.create(spec("alive"))
    store.claim_next()
    store.claim_next()
    store.update(lost.id, pid=dead.pid, step=3, total_steps=10)
    store.update(alive.id, pid=os.getpid())
    assert store.recover() == [lost.id]
    assert store.get(lost.id).state == "interrupted"
    assert store.get(alive.id).state == "running"


def test_runner_heartbeat(store: JobStore) -> None:
    assert not store.runner_alive()
    store.heartbeat(os.getpid())
    assert store.runner_alive()
    store.drop_runner(os.getpid())
    assert not store.runner_alive()


def write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_dataset_store_checks_before_storing_and_names_the_line(tmp_path: Path) -> None:
    datasets = DatasetStore(tmp_path / "ds")
    bad = write(tmp_path / "bad.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": "c"}])
    with pytest.raises(DatasetError) as err:
        datasets.add(bad)
    assert "line 2" in str(err.value) and "output" in str(err.value)
    assert "bad.jsonl" in str(err.value) and ".tmp" not in str(err.value)
    assert datasets.list() == []
    good = write(tmp_path / "good.jsonl", [{"instruction": "a", "output": "b"}] * 3)
    record = datasets.add(good)
    assert (record.kind, record.format, record.records) == ("train", "alpaca", 3)
    assert datasets.add(good, filename="other.jsonl").id == record.id  # same bytes, same id
    assert datasets.path(record.id).read_bytes() == good.read_bytes()
    with pytest.raises(DatasetNotFound):
        datasets.get("f" * 16)


def test_dataset_store_questions_kind(tmp_path: Path) -> None:
    datasets = DatasetStore(tmp_path / "ds")
    ok = write(tmp_path / "q.jsonl", [{"question": "q?", "answerable": True, "answers": ["x"]}])
    assert datasets.add(ok, kind="questions").records == 1
    bad = write(tmp_path / "q2.jsonl", [{"question": "q?", "answerable": True, "answers": ["x"]},
                                        {"question": "q?", "answerable": True}])
    with pytest.raises(DatasetError, match="line 2"):
        datasets.add(bad, kind="questions")


@pytest.fixture
def desk(tmp_path: Path) -> TuningDesk:
    return TuningDesk(tmp_path / "tuning", AdapterRegistry(tmp_path / "adapters"))


def test_desk_refuses_bad_jobs_before_queueing(desk: TuningDesk, tmp_path: Path) -> None:
    data = write(tmp_path / "d.jsonl", [{"instruction": "a", "output": "b"}] * 4)
    ds = desk.add_dataset(data)
    with pytest.raises(ValueError, match="unknown training option"):
        desk.submit(JobSpec(name="a", dataset_id=ds.id, model="m", train={"lora_rank": 8}))
    with pytest.raises(ValueError, match="may not set output_dir"):
        desk.submit(JobSpec(name="a", dataset_id=ds.id, model="m", train={"output_dir": "/x"}))
    with pytest.raises(ValueError, match="--lr"):
        desk.submit(JobSpec(name="a", dataset_id=ds.id, model="m", train={"lr": 5.0}))
    with pytest.raises(DatasetError, match="field 'text'"):  # chosen format checked, not just auto
        desk.submit(JobSpec(name="a", dataset_id=ds.id, model="m", train={"format": "text"}))
    with pytest.raises(ValueError, match="adapter name"):
        desk.submit(JobSpec(name="../x", dataset_id=ds.id, model="m"))
    assert desk.store.list() == []
    job = desk.submit(JobSpec(name="a", dataset_id=ds.id, model="m"))
    with pytest.raises(TuningError, match="already queued or running"):
        desk.submit(JobSpec(name="a", dataset_id=ds.id, model="m"))
    assert [j.id for j in desk.store.list()] == [job.id]


def test_gate_spec_is_checked() -> None:
    with pytest.raises(ValueError, match="does not compile"):
        GateSpec(regex="(")
    with pytest.raises(ValueError, match="needs a behaviour check"):
        GateSpec(promote_if_better=True)
    with pytest.raises(ValueError, match="go together"):
        GateSpec(eval_collection="kb")


def test_behaviour_checks_and_adherence() -> None:
    checks = BehaviourChecks(regex=r"Sources: \[\d+\]$", max_chars=40, required_phrase="paris")
    assert checks.failures("It is Paris. Sources: [1]") == []
    assert checks.failures("It is Paris.") == ["regex"]
    assert checks.failures("Rome " * 20 + "Sources: [2]") == ["max_chars", "required_phrase"]
    report = adherence(["Paris. Sources: [1]", "Paris.", "Lyon. Sources: [3]"], checks)
    assert report["adherence"] == pytest.approx(1 / 3, abs=1e-3)
    assert report["failures"] == {"regex": 1, "required_phrase": 1}


def test_decide_needs_adherence_to_rise_and_accuracy_to_hold() -> None:
    def rep(base: float, tuned: float, acc: tuple[float, float] | None = None) -> dict[str, object]:
        r: dict[str, object] = {"base": {"adherence": base}, "tuned": {"adherence": tuned}}
        if acc:
            r["eval"] = {"base": {"answer_accuracy": acc[0]}, "tuned": {"answer_accuracy": acc[1]}}
        return r

    assert decide(rep(0.1, 0.9), True)["better"] is True
    assert decide(rep(0.5, 0.5), True)["better"] is False
    assert decide(rep(0.1, 0.9, (0.3, 0.2)), True)["better"] is False
    assert decide(rep(0.1, 0.9, (0.3, 0.3)), True)["better"] is True
    assert decide({}, False)["better"] is None


def test_prompts_are_the_conversation_before_the_answer() -> None:
    samples = [Sample(1, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                          {"role": "assistant", "content": "a"}]), Sample(2, text="plain")]
    assert prompts_of(samples, 5) == [[{"role": "system", "content": "s"},
                                       {"role": "user", "content": "u"}]]


def test_default_method_is_qlora_on_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from tuning.service import default_method

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_method("auto") == "lora"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_method("auto") == "qlora"
    assert default_method("cpu") == "lora"
    assert default_method("auto", {"peft": False}) == "lora"  # TrainConfig makes it full


def test_jobs_are_counted_by_state(store: JobStore) -> None:
    assert store.count_by_state() == {}
    jobs = [store.create(spec(name)) for name in "abcde"]
    store.claim_next()
    store.claim_next()
    store.finish(jobs[0].id, "succeeded")
    store.cancel(jobs[4].id)
    counted = store.count_by_state()
    assert counted == Counter(job.state for job in store.list())
    assert counted == {"succeeded": 1, "running": 1, "queued": 2, "cancelled": 1}
