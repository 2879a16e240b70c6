"""A tuning run on the session's local Ray cluster: 2 DDP workers (Ray Train, gloo on CPU) train
the tiny SmolLM2 run, and a resume continues from the checkpoint on both ranks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tuning.base import Progress
from tuning.config import TrainConfig

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_two_ddp_workers_train_and_resume(tiny_base: Path, tiny_data: Path, tmp_path: Path) -> None:
    from cluster.train import RayTrainer

    config = TrainConfig(model=str(tiny_base), data_path=str(tiny_data), output_dir=str(tmp_path / "run"),
                         trainer="hf", max_steps=2, batch_size=2, grad_accum=1, model_max_length=64,
                         lr=1e-3, warmup_ratio=0.0, num_threads=1, save_steps=1, logging_steps=1)
    seen: list[Progress] = []
    first = RayTrainer(workers=2).train(config, on_progress=seen.append)
    assert first.steps == 2 and not first.cancelled
    assert first.adapter_dir is not None and (first.adapter_dir / "adapter_config.json").is_file()
    assert sorted({p.step for p in seen}) == [1, 2], "rank 0's progress, as it trained"
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file(), \
        "both ranks saved into the one checkpoint"

    more: list[Progress] = []
    resumed = RayTrainer(workers=2).train(dataclasses.replace(config, max_steps=3, resume=True),
                                          on_progress=more.append)
    assert resumed.steps == 3 and {p.step for p in more} == {3}, "from the checkpoint at step 2"
    log = (tmp_path / "run" / "training.log").read_text().splitlines()
    steps = [line.split()[0] for line in log if line.startswith("step=")]
    assert steps[0] == "step=1/2" and steps[-1] == "step=3/3" and "step=1/3" not in steps, \
        "the resumed run appended to the log, starting after the checkpoint"


def test_workers_that_do_not_fit_fail_the_job_at_once(tiny_data: Path, tmp_path: Path) -> None:
    from cluster.train import RayTrainer
    from tuning.errors import TuningError

    config = TrainConfig(model=str(tmp_path / "no-model"), data_path=str(tiny_data),
                         output_dir=str(tmp_path / "run"), trainer="hf", max_steps=1)
    with pytest.raises(TuningError, match="training workers need 64 CPUs"):
        RayTrainer(workers=64).train(config)
