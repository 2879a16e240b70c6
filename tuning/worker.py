"""What a worker process does with one claimed job: train, gate, register, and record the outcome.

The process entry (`python -m api.tuning_worker`) wires the settings-dependent parts in `Hooks` and
calls `JobExecutor.run`. Everything the job produces lives in its run directory (training.log,
metrics.json, checkpoints/, adapter/, gate.json); progress goes to the job table after each step.

A cancel request (the runner also sends SIGTERM for it) or SIGTERM alone (the service shutting down)
stops training at the next step, or the next micro-batch, with a checkpoint; in a phase with no step
(loading, tokenizing, the gate) `stop` raises `Stopped` at once. The job then ends `cancelled` when
a cancel was asked for, else `interrupted`; either way it is resumable.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.adapter_registry import KEEP_SET, AdapterRegistry

from .base import Progress, Trainer
from .config import TrainConfig
from .dataset_store import DatasetStore
from .datasets import load_samples, split
from .errors import TuningError
from .jobs import PROBE, JobStore, TuningJob
from .sizing import RunPlan, verdict

DEFAULT_SAVE_STEPS = 5
GATE_FILE = "gate.json"
SHUTDOWN = "stopped by the service shutting down; resume it to continue"


class Stopped(BaseException):
    """Raised by `JobExecutor.stop` (the worker's SIGTERM handler) to leave a phase with no step to
    stop at. A BaseException, so that no library's `except Exception` swallows it."""


@dataclass
class Hooks:
    """The parts of a job that need the service's settings (models, embedder, collections)."""

    load_model: Callable[[str], Any]  # base model path -> generation.loading.LoadedModel
    eval_accuracy: Callable[[str, Path, Any], dict[str, Any]] | None = None  # (collection, questions, gen)
    train_probe: Callable[[TuningJob, Path], dict[str, Any]] | None = None
    trainer: Callable[[str], Trainer] | None = None  # TrainConfig.trainer -> the Trainer (a cluster's)


class JobExecutor:
    def __init__(self, store: JobStore, datasets: DatasetStore, adapters: AdapterRegistry,
                 runs_root: Path, hooks: Hooks, interrupted: threading.Event | None = None) -> None:
        self.store = store
        self.datasets = datasets
        self.adapters = adapters
        self.runs_root = Path(runs_root)
        self.hooks = hooks
        self.interrupted = interrupted or threading.Event()
        self._armed = False  # inside run(): `stop` may raise Stopped
        self._stepping = False  # inside the training loop, which stops at its next step itself

    def run(self, job: TuningJob) -> None:
        """Run `job` to a final state; errors become a failed job with the message."""
        self._armed = True
        try:
            if self.interrupted.is_set():  # SIGTERM came while the worker was starting
                raise Stopped
            if job.spec.method == PROBE:
                self._probe(job)
            else:
                self._train(job)
        except Stopped:
            self._end_stopped(job.id)
        except (TuningError, ValueError, OSError) as exc:
            self._armed = False
            self.store.finish(job.id, "failed", error=str(exc))
        finally:
            self._armed = False

    def stop(self) -> None:
        """Stop the job (SIGTERM's handler: call it from the main thread). The training loop stops
        at its next step with a checkpoint; anywhere else Stopped is raised here and now."""
        self.interrupted.set()
        if self._armed and not self._stepping:
            self._armed = False
            raise Stopped

    def _end_stopped(self, job_id: str, result: dict[str, Any] | None = None) -> None:
        """A stopped job ends cancelled when a cancel was asked for, else interrupted."""
        self._armed = False
        if self.store.cancel_requested(job_id):
            self.store.finish(job_id, "cancelled", result=result)
        else:
            self.store.finish(job_id, "interrupted", result=result, error=SHUTDOWN)

    def run_dir(self, job: TuningJob) -> Path:
        return self.runs_root / job.id

    def config(self, job: TuningJob) -> TrainConfig:
        spec = job.spec
        planned = RunPlan(**spec.plan).overrides() if spec.plan else {}
        # the plan never sets an option the job gave, except to resolve an adapter's name to its path
        train = {"save_steps": DEFAULT_SAVE_STEPS, **spec.train, **planned}
        if spec.mix_dataset_id:
            train["mix_path"] = str(self.datasets.path(spec.mix_dataset_id))
        valid = str(self.datasets.path(spec.valid_dataset_id)) if spec.valid_dataset_id else None
        return TrainConfig(model=spec.model, data_path=str(self.datasets.path(spec.dataset_id)),
                           valid_path=valid, output_dir=str(self.run_dir(job)), name=spec.name,
                           method=spec.method, **{**train, "resume": job.resume})

    def _should_stop(self, job_id: str) -> Callable[[], bool]:
        def check() -> bool:
            self._stepping = True  # the loop is running: a stop now waits for its next step
            return self.interrupted.is_set() or self.store.cancel_requested(job_id)
        return check

    def _on_progress(self, job_id: str) -> Callable[[Progress], None]:
        def report(p: Progress) -> None:
            self.store.update(job_id, phase="training", step=p.step, total_steps=p.total_steps,
                              loss=p.loss, eval_loss=p.eval_loss, tokens_per_s=p.tokens_per_s,
                              eta_s=p.eta_s if p.eta_s != float("inf") else None, epoch=p.epoch)
        return report

    def _train(self, job: TuningJob) -> None:
        from .trainer import make_trainer

        config = self.config(job)
        if job.spec.plan:
            plan = RunPlan(**job.spec.plan)
            _say(plan.line(), *(f"warning: {w}" for w in plan.warnings))
        self.store.update(job.id, phase="loading")
        try:
            result = (self.hooks.trainer or make_trainer)(config.trainer).train(
                config, self._on_progress(job.id), self._should_stop(job.id))
        finally:
            self._stepping = False
        if result.eval_loss is not None:  # the final evaluation comes after the last progress report
            self.store.update(job.id, eval_loss=result.eval_loss)
        summary: dict[str, Any] = {"train": result.to_dict()}
        if result.cancelled or self._stop_asked(job.id):
            self._end_stopped(job.id, summary)
            return
        assert result.adapter_dir is not None
        gate = self._gate(job, config, result.adapter_dir) if job.spec.gate.declared else None
        if gate is not None:
            summary["gate"] = gate
            (self.run_dir(job) / GATE_FILE).write_text(json.dumps(gate, indent=2) + "\n")
        if self._stop_asked(job.id):  # a cancel with no runner to signal it
            self._end_stopped(job.id, summary)
            return
        self.store.update(job.id, phase="registering")
        self._register(job, config, result.adapter_dir, {**result.to_dict(), "gate": gate})
        summary["adapter"] = job.spec.name
        summary["verdict"] = verdict(summary["train"], gate)
        _say(summary["verdict"])
        summary["promote"] = bool(job.spec.gate.promote_if_better and gate and gate.get("better"))
        self.store.finish(job.id, "succeeded", result=summary)

    def _stop_asked(self, job_id: str) -> bool:
        return self.interrupted.is_set() or self.store.cancel_requested(job_id)

    def _register(self, job: TuningJob, config: TrainConfig, adapter_dir: Path,
                  metrics: dict[str, Any]) -> None:
        from transformers import AutoTokenizer

        from .datasets import dataset_hash

        existing = {r.name: r for r in self.adapters.list()}
        if job.spec.name in existing:  # registered by an earlier attempt of this very job
            if existing[job.spec.name].config.get("output_dir") == config.output_dir:
                return
            raise TuningError(f"adapter {job.spec.name!r} already exists; pick another --name")
        if config.mix_path and Path(config.mix_path).name == KEEP_SET:  # it keeps what that one did,
            shutil.copyfile(config.mix_path, adapter_dir / KEEP_SET)  # and so will tunes on it
        tokenizer = AutoTokenizer.from_pretrained(config.model)
        self.adapters.register(job.spec.name, adapter_dir, config.model, tokenizer, config,
                               dataset_hash(config.data_path), metrics)

    def _held_out(self, config: TrainConfig) -> list[Any]:
        if config.valid_path:
            return load_samples(config.valid_path, config.format, config.text_column)
        samples = load_samples(config.data_path, config.format, config.text_column)
        return split(samples, config.val_fraction, config.seed)[1]

    def _gate(self, job: TuningJob, config: TrainConfig, adapter_dir: Path) -> dict[str, Any]:
        from generation.generator import HFGenerator

        from .gate import Pinned, prompts_of, run_gate

        gate = job.spec.gate
        if config.method not in ("lora", "qlora"):
            return {"better": None, "reason": f"no gate for {config.method}: only LoRA adapters are "
                                              "served beside the base, which the gate compares"}
        self.store.update(job.id, phase="gate: loading")
        gen = HFGenerator(self.hooks.load_model(config.model))
        gen.add_adapter("tuned", adapter_dir)  # beside the base weights, as serving does
        baseline = self._served_adapter(config, gen.tokenizer)
        if baseline is not None:  # compare with what users get now, not the bare base
            gen.add_adapter(baseline, self.adapters.get(baseline).path)
        tuned, base = Pinned(gen, "tuned"), Pinned(gen, baseline or "base")
        prompts = prompts_of(self._held_out(config), gate.prompts, config.seed)
        evaluate = None
        if gate.eval_collection and gate.eval_questions and self.hooks.eval_accuracy is not None:
            questions = self.datasets.path(gate.eval_questions)
            collection = gate.eval_collection
            hook = self.hooks.eval_accuracy

            def evaluate(model: Any) -> dict[str, Any]:
                return hook(collection, questions, model)

        return run_gate(tuned, base, prompts, gate, evaluate,
                        on_phase=lambda phase: self.store.update(job.id, phase=phase))

    def _served_adapter(self, config: TrainConfig, tokenizer: Any) -> str | None:
        """The adapter being served, when it is a LoRA trained on this job's base and tokenizer."""
        from generation.adapters import is_base
        from generation.errors import GenerationError

        name = self.adapters.active()
        if is_base(name) or name == "tuned":
            return None
        try:
            record = self.adapters.check_compatible(str(name), config.model, tokenizer)
        except (GenerationError, LookupError, OSError):
            return None
        return str(name) if record.method in ("lora", "qlora") else None

    def _probe(self, job: TuningJob) -> None:
        if self.hooks.train_probe is None:
            raise TuningError("this worker cannot train linear probes (no embedder wired)")
        start = time.perf_counter()
        self.store.update(job.id, phase="training", total_steps=1)
        metrics = self.hooks.train_probe(job, self.datasets.path(job.spec.dataset_id))
        self.store.update(job.id, step=1)
        self.store.finish(job.id, "succeeded", result={
            "classifier": job.spec.name, "metrics": metrics,
            "seconds": round(time.perf_counter() - start, 2)})


def _say(*lines: str) -> None:
    """Lines for the worker's log (its stdout), which the job's log stream shows."""
    print("\n".join(lines), flush=True)
