"""A tuning run on the session's local Ray cluster: 2 DDP workers (Ray Train, gloo on CPU) train
the tiny SmolLM2 run, and a resume continues from the checkpoint on both ranks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tuning.base import Progress
from tuning.config import TrainConfig

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_two_ddp_workers_train_stop_together_and_resume(tiny_base: Path, tiny_data: Path,
                                                        tmp_path: Path) -> None:
    """Cancelled once rank 0's first progress is in: every rank stops at the same step with one
    checkpoint; the resume goes on from it on both ranks to the end and writes the adapter."""
    from cluster.train import RayTrainer

    steps = 40
    config = TrainConfig(model=str(tiny_base), data_path=str(tiny_data), output_dir=str(tmp_path / "run"),
                         trainer="hf", max_steps=steps, batch_size=2, grad_accum=1, model_max_length=64,
                         lr=1e-3, warmup_ratio=0.0, num_threads=1, eval_steps=1000, logging_steps=1)
    seen: list[Progress] = []
    first = RayTrainer(workers=2).train(config, on_progress=seen.append, should_stop=lambda: bool(seen))
    assert first.cancelled and 1 <= first.steps < steps and first.adapter_dir is None
    assert {p.step for p in seen} <= set(range(1, first.steps + 1)), "rank 0's progress, as it trained"
    checkpoint = tmp_path / "run" / "checkpoints" / f"checkpoint-{first.steps}"
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file(), \
        "both ranks stopped at the same step and saved into the one checkpoint"

    more: list[Progress] = []
    resumed = RayTrainer(workers=2).train(dataclasses.replace(config, resume=True),
                                          on_progress=more.append)
    assert resumed.steps == steps and not resumed.cancelled
    assert min(p.step for p in more) == first.steps + 1, "from the checkpoint, not from the start"
    assert resumed.adapter_dir is not None and (resumed.adapter_dir / "adapter_config.json").is_file()
    log = (tmp_path / "run" / "training.log").read_text().splitlines()
    numbers = [int(line.split()[0].split("=")[1].split("/")[0]) for line in log
               if line.startswith("step=")]
    assert numbers == sorted(numbers) and numbers[-1] == steps, "one log, appended by the resume"


def test_workers_that_do_not_fit_fail_the_job_at_once(tiny_data: Path, tmp_path: Path) -> None:
    from cluster.train import RayTrainer
    from tuning.errors import TuningError

    config = TrainConfig(model=str(tmp_path / "no-model"), data_path=str(tiny_data),
                         output_dir=str(tmp_path / "run"), trainer="hf", max_steps=1)
    with pytest.raises(TuningError, match="training workers need 64 CPUs"):
        RayTrainer(workers=64).train(config)
