"""The tuning worker process: `python -m api.tuning_worker --job ID`, started by the runner.

It reads the service's settings from RAGTUNE_WORKER_SETTINGS (JSON, set by the runner) or the usual
RAGTUNE_* variables, wires only what a job needs (model loading, the embedder and collections for
the gate's eval and for linear probes; not the server's `Services`) and runs the job. SIGTERM (from
the runner, for a cancel or a shutdown) stops it: training at the next step with a checkpoint, any
other phase at once (`JobExecutor.stop`); the job is then `cancelled` or `interrupted`, and resumable.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.adapter_registry import AdapterRegistry
from generation.adapters import BASE
from tuning.jobs import PROBE, TuningJob
from tuning.worker import Hooks, JobExecutor

from .answering import answer_verifier, answering_config
from .settings import Settings

if TYPE_CHECKING:
    from .corpus import Corpus

ENV = "RAGTUNE_WORKER_SETTINGS"


def settings_from_env() -> Settings:
    raw = os.environ.get(ENV)
    return Settings.model_validate_json(raw) if raw else Settings()


def make_hooks(settings: Settings, corpus: Corpus, adapters: AdapterRegistry) -> Hooks:
    """What a job may need: loading a base model, answering a collection's golden questions (the
    gate's accuracy check) and the embedder (linear probes)."""

    def load(path: str) -> Any:
        from generation.loading import LoadConfig, load_model, resolve_quantization

        mode, _ = resolve_quantization(settings.quantization, path, settings.device)
        return load_model(path, LoadConfig(quantization=mode, device=settings.device))

    def eval_accuracy(collection: str, questions: Path, gen: Any) -> dict[str, Any]:
        from generation.answerability import DEFAULT_MODEL, AnswerabilityModel
        from generation.evaluation import evaluate, load_questions
        from generation.rag import RagAnswerer

        classifier = AnswerabilityModel.load(settings.answerability_model or DEFAULT_MODEL) \
            if settings.answerability else None
        active = adapters.active()
        served = None if active in (None, BASE) else active
        config = answering_config(settings, served, classifier,
                                  keeps=adapters.keeps(served) if served else ())
        verifier = answer_verifier(settings)
        answerer = RagAnswerer(lambda: gen, corpus.embedder.embed_batch, lambda: verifier)
        summary, _ = evaluate(load_questions(questions), lambda q: answerer.answer(
            q, corpus.search(collection, q, config.k), config))
        return summary

    def train_probe(job: TuningJob, data: Path) -> dict[str, Any]:
        from tuning.probe import ClassifierRegistry, train_and_register

        options = job.spec.train
        record = train_and_register(job.spec.name, data, corpus.embedder,
                                    ClassifierRegistry(settings.data_dir / "classifiers"),
                                    text_column=options.get("text_column", "text"),
                                    label_column=job.spec.label_column, seed=options.get("seed", 42),
                                    val_fraction=options.get("val_fraction", 0.2),
                                    trainer=options.get("trainer", "sklearn"))
        return dict(getattr(record, "metrics", {}) or {})

    trainer = None
    if settings.cluster:  # only then is Ray imported
        from .cluster import trainer_factory

        trainer = trainer_factory(settings)
    return Hooks(load_model=load, eval_accuracy=eval_accuracy, train_probe=train_probe,
                 trainer=trainer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    interrupted = threading.Event()
    executor: JobExecutor | None = None

    def on_sigterm(*_: Any) -> None:
        if executor is None:
            interrupted.set()  # still starting: the executor sees it when it begins
        else:
            executor.stop()  # may raise Stopped, here in the main thread

    signal.signal(signal.SIGTERM, on_sigterm)

    from generation.models import ModelRegistry, resolve_model
    from tuning.service import TuningDesk

    from .corpus import Corpus

    settings = settings_from_env()
    adapters = AdapterRegistry(settings.data_dir / "adapters")
    desk = TuningDesk(settings.data_dir / "tuning", adapters, settings.device)
    job = desk.store.get(args.job)
    if not job.spec.model and job.spec.method != PROBE:
        job.spec.model = resolve_model(settings.generator, ModelRegistry(settings.data_dir / "models"))
    executor = JobExecutor(desk.store, desk.datasets, adapters, desk.runs_root,
                           make_hooks(settings, Corpus(settings), adapters), interrupted)
    executor.run(job)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
