"""Tuning on a Ray cluster: the HF Trainer path run by Ray Train's TorchTrainer, DDP over N workers.

`RayTrainer` is a `Trainer` like the native and HF ones, so a job keeps its queue, progress, cancel,
resume and gate (tuning/worker.py calls it as it calls the others). Each Ray Train worker runs
`HFTrainer` on the same TrainConfig: Ray Train has set up the process group (gloo on CPU, NCCL on
GPUs) and transformers.Trainer shards the batches over it. Rank 0 owns the run directory (training
log, metrics, adapter) and sends its progress to a small channel actor that this process reads;
the other ranks write their logs under `ranks/N/`, their checkpoint folder being a link to rank 0's,
so a resume finds the same checkpoint on every rank. A cancel is read on rank 0 and agreed by all
ranks at each step (an all-reduce), so they stop at the same step and checkpoint together. The run
directory must be on storage every node sees (one machine, or a shared volume).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from tuning.base import CHECKPOINTS_DIR, Progress, ProgressFn, StopFn, TrainResult
from tuning.config import TrainConfig
from tuning.errors import TuningError

RANKS_DIR = "ranks"
POLL_S = 0.2


class Channel:
    """Between the job's process and the workers: rank 0's progress and result, and the stop flag
    (an actor: made remote in `RayTrainer.train`)."""

    def __init__(self) -> None:
        self.progress: list[Progress] = []
        self.result: TrainResult | None = None
        self.stop = False

    def report(self, progress: Progress) -> None:
        self.progress.append(progress)

    def take(self) -> tuple[list[Progress], TrainResult | None]:
        taken, self.progress = self.progress, []
        return taken, self.result

    def finish(self, result: TrainResult) -> None:
        self.result = result

    def request_stop(self) -> None:
        self.stop = True

    def stopping(self) -> bool:
        return self.stop


def rank_config(config: TrainConfig, rank: int) -> TrainConfig:
    """Rank 0 runs `config` as it is; another rank writes under ranks/N/, with a link to rank 0's
    checkpoints (where transformers.Trainer saves each rank's RNG state and resumes from)."""
    if rank == 0:
        return config
    own = Path(config.output_dir) / RANKS_DIR / str(rank)
    own.mkdir(parents=True, exist_ok=True)
    shared = Path(config.output_dir) / CHECKPOINTS_DIR
    shared.mkdir(parents=True, exist_ok=True)
    link = own / CHECKPOINTS_DIR
    if not link.is_symlink():
        link.symlink_to(shared.resolve(), target_is_directory=True)
    return dataclasses.replace(config, output_dir=str(own))


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: HFTrainer on its rank's config, stopping when every rank agrees."""
    import ray
    import torch
    import torch.distributed as dist
    from ray import train

    from tuning.hf_trainer import HFTrainer

    channel = loop_config["channel"]
    rank = train.get_context().get_world_rank()

    def should_stop() -> bool:  # called by every rank once per step, so the all-reduce lines up
        flag = torch.tensor([1 if rank == 0 and ray.get(channel.stopping.remote()) else 0])
        if dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_progress(progress: Progress) -> None:
        channel.report.remote(progress)

    result = HFTrainer().train(rank_config(loop_config["config"], rank),
                               on_progress if rank == 0 else None, should_stop)
    if rank == 0:
        ray.get(channel.finish.remote(result))


class RayTrainer:
    """Trainer over `workers` Ray Train workers (DDP), each holding `cpus_per_worker` CPUs and, with
    `use_gpu`, one GPU. The process calling `train` must have joined the cluster."""

    def __init__(self, workers: int = 2, cpus_per_worker: float = 1.0, use_gpu: bool = False) -> None:
        if workers < 1:
            raise ValueError(f"workers {workers!r} must be >= 1")
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.use_gpu = use_gpu

    def _check_fits(self, free: dict[str, float]) -> None:
        """TuningError unless the workers fit what the cluster has free now: Ray Train would wait
        for ever for a placement that cannot happen (serve replicas hold CPUs too)."""
        wanted = {"CPU": self.workers * self.cpus_per_worker, "GPU": self.workers * self.use_gpu}
        for resource, amount in wanted.items():
            if amount and free.get(resource, 0.0) < amount:
                raise TuningError(
                    f"{self.workers} training workers need {amount:g} {resource}s but the Ray cluster "
                    f"has {free.get(resource, 0.0):g} free: lower RAGTUNE_TRAIN_WORKERS, add nodes (or "
                    "CPUs: `ray start --num-cpus`), or wait for other work to end")

    def train(self, config: TrainConfig, on_progress: ProgressFn | None = None,
              should_stop: StopFn | None = None) -> TrainResult:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        self._check_fits(ray.available_resources())
        channel: Any = ray.remote(num_cpus=0)(Channel).remote()
        out = Path(config.output_dir).resolve()
        trainer = TorchTrainer(
            _worker_loop, train_loop_config={"config": config, "channel": channel},
            scaling_config=ScalingConfig(num_workers=self.workers, use_gpu=self.use_gpu,
                                         resources_per_worker={"CPU": self.cpus_per_worker}),
            run_config=RunConfig(name="ray-train", storage_path=str(out / RANKS_DIR)))
        failure: list[BaseException] = []

        def fit() -> None:
            try:
                trainer.fit()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                failure.append(exc)

        runner = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
        runner.start()
        stop_sent = False
        result: TrainResult | None = None
        while True:
            done = not runner.is_alive()
            taken, result = ray.get(channel.take.remote())
            for progress in taken:
                if on_progress is not None:
                    on_progress(progress)
            if done:
                break
            if not stop_sent and should_stop is not None and should_stop():
                channel.request_stop.remote()
                stop_sent = True
            time.sleep(POLL_S)
        ray.kill(channel)
        if failure:
            raise failure[0]
        if result is None:
            raise RuntimeError("the Ray Train run ended without a result from rank 0")
        return result
