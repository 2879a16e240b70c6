"""The tuning worker process: `python -m api.tuning_worker --job ID`, started by the runner.

It reads the service's settings from RAGTUNE_WORKER_SETTINGS (JSON, set by the runner) or the usual
RAGTUNE_* variables, wires what a job needs (model loading, the embedder and collections for the
gate's eval and for linear probes) and runs the job. SIGTERM asks it to stop at the next step with
a checkpoint (the job is then `interrupted`, and resumable).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from tuning.jobs import TuningJob
from tuning.worker import Hooks, JobExecutor

from .settings import Settings

ENV = "RAGTUNE_WORKER_SETTINGS"


def settings_from_env() -> Settings:
    raw = os.environ.get(ENV)
    return Settings.model_validate_json(raw) if raw else Settings()


def make_hooks(svc: Any) -> Hooks:
    settings = svc.settings

    def load(path: str) -> Any:
        from generation.loading import LoadConfig, load_model, resolve_quantization

        mode, _ = resolve_quantization(settings.quantization, path, settings.device)
        return load_model(path, LoadConfig(quantization=mode, device=settings.device))

    def eval_accuracy(collection: str, questions: Path, gen: Any) -> dict[str, Any]:
        from generation.evaluation import evaluate, load_questions
        from generation.rag import RagAnswerer

        config = svc.ask_config()
        answerer = RagAnswerer(lambda: gen, svc.embedder.embed_batch)
        summary, _ = evaluate(load_questions(questions), lambda q: answerer.answer(
            q, svc.search(collection, q, config.k), config))
        return summary

    def train_probe(job: TuningJob, data: Path) -> dict[str, Any]:
        from tuning.probe import ClassifierRegistry, train_and_register

        options = job.spec.train
        record = train_and_register(job.spec.name, data, svc.embedder,
                                    ClassifierRegistry(settings.data_dir / "classifiers"),
                                    text_column=options.get("text_column", "text"),
                                    label_column=job.spec.label_column, seed=options.get("seed", 42),
                                    val_fraction=options.get("val_fraction", 0.2))
        return dict(getattr(record, "metrics", {}) or {})

    return Hooks(load_model=load, eval_accuracy=eval_accuracy, train_probe=train_probe)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    interrupted = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: interrupted.set())

    from .services import Services

    svc = Services(settings_from_env())
    desk = svc.tuning
    job = desk.store.get(args.job)
    if not job.spec.model and job.spec.method != "linear_probe":
        job.spec.model = svc.generator_path()
    executor = JobExecutor(desk.store, desk.datasets, desk.adapters, desk.runs_root,
                           make_hooks(svc), interrupted)
    executor.run(job)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
