"""The composition root: turns Settings into the long-lived objects the server's edges use.

Each object comes from the package that owns its recipe; this file only chooses them from Settings
and hands them to each other. Heavy models load lazily, once per process, on first use. Recovery
after a crash (`recover`) is the server's to call, once, at start-up.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from generation.adapter_registry import AdapterRegistry
from generation.answerability import DEFAULT_MODEL as DEFAULT_ANSWERABILITY
from generation.answerability import AnswerabilityModel
from generation.eval_runs import EvalStore
from generation.generator import Generator, Messages, SamplingConfig
from generation.grounding import Example
from generation.rag import Answer, AskConfig, RagAnswerer
from generation.serving import ServingModel
from generation.verifier import CrossEncoderVerifier
from guardrails.policy import Guard, Screening
from guardrails.serving import ServedScreen, open_screen
from ingest.jobs import IngestWorker
from ingest.pipeline import IngestReport, ingest_paths
from retrieval.embedder import Embedder
from retrieval.types import SearchFilter
from tuning.jobs import TuningJob
from tuning.probe import ClassifierRegistry
from tuning.runner import TuningRunner
from tuning.service import TuningDesk

from .answering import answer_verifier, answering_config
from .corpus import Corpus
from .settings import Settings

if TYPE_CHECKING:
    from generation.models import ModelRegistry

log = logging.getLogger("ragtune")


class Services(Corpus):
    """Everything the server serves: the corpus (collections, embedder, ingest and search), the
    serving model and its adapters, answering, evaluations, classifiers and tuning."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None,
                 generator: Generator | None = None) -> None:
        super().__init__(settings, embedder)
        self._lock = threading.Lock()
        self.ingest_worker = IngestWorker(settings.data_dir, self.catalog, lambda: self.embedder,
                                          self.archive_limits, self.file_limits,
                                          workers=settings.ingest_workers,
                                          ingest=self._ingest_recipe())
        self.evals = EvalStore(settings.data_dir / "evals")
        self.adapters = AdapterRegistry(settings.data_dir / "adapters")
        self.serving = ServingModel(self.adapters, self.generator_path, settings.quantization,
                                    settings.device, generator, max_batch=settings.max_batch,
                                    waiting=settings.generation_queue)
        self.tuning = TuningDesk(settings.data_dir / "tuning", self.adapters, settings.device,
                                 serving_model=self.generator_path,
                                 open_collection=self.collection)
        self.tuning_runner = TuningRunner(self.tuning.store, self.tuning.runs_root,
                                          self.worker_command, on_finished=self._after_tuning,
                                          env=self.worker_env())
        self._runner_started = False
        self._classifiers: ClassifierRegistry | None = None
        self._answerability: AnswerabilityModel | None = None
        self._verifier: CrossEncoderVerifier | None = None
        self._screen: ServedScreen | None = None

    def _ingest_recipe(self) -> Callable[..., IngestReport]:
        """How upload jobs ingest: here, or on RAGTUNE_CLUSTER (Ray imported only then)."""
        if not self.settings.cluster:
            return ingest_paths
        from .cluster import job_ingest

        return job_ingest(self)

    @property
    def classifiers(self) -> ClassifierRegistry:
        """Linear-probe classifiers, under data_dir/classifiers."""
        with self._lock:
            if self._classifiers is None:
                self._classifiers = ClassifierRegistry(self.settings.data_dir / "classifiers")
            return self._classifiers

    def model_registry(self) -> ModelRegistry:
        from generation.models import ModelRegistry

        return ModelRegistry(self.settings.data_dir / "models")

    def generator_path(self, progress: Callable[[str], None] | None = None) -> str:
        """The configured generator (RAGTUNE_GENERATOR) as a loadable path."""
        from generation.models import resolve_model

        return resolve_model(self.settings.generator, self.model_registry(), progress)

    def ask_config(self, k: int = 5, max_new_tokens: int | None = None,
                   temperature: float = 0.0, mode: str = "zero_shot",
                   examples: tuple[Example, ...] = (), adapter: str | None = None,
                   answer_style: str | None = None, strict: bool | None = None) -> AskConfig:
        """`adapter` as a request gives it: a name, "base", or None for the active adapter;
        `strict` None: RAGTUNE_REFUSE_UNGROUNDED."""
        name = self.serving.adapter_for(adapter)
        return answering_config(
            self.settings, name, self.answerability_model() if self.settings.answerability else None,
            k=k, max_new_tokens=max_new_tokens, temperature=temperature, mode=mode,
            examples=examples, answer_style=answer_style, strict=strict,
            keeps=self.adapters.keeps(name) if name else ())

    def answerability_model(self) -> AnswerabilityModel:
        """The answerability classifier (read once): RAGTUNE_ANSWERABILITY_MODEL or the packaged."""
        with self._lock:
            if self._answerability is None:
                path = self.settings.answerability_model or DEFAULT_ANSWERABILITY
                self._answerability = AnswerabilityModel.load(path)
            return self._answerability

    def verifier(self) -> CrossEncoderVerifier:
        """The answer verifier (loaded at its first use): RAGTUNE_VERIFIER or the packaged one."""
        with self._lock:
            if self._verifier is None:
                self._verifier = answer_verifier(self.settings)
            return self._verifier

    def ask_stream(self, name: str, question: str, config: AskConfig,
                   flt: SearchFilter | None = None,
                   rerank: bool | None = None) -> Iterator[str | Answer]:
        hits = self.search(name, question, config.k, flt, rerank=rerank)
        return self.answerer(config).stream(question, hits, config,
                                            self.collection(name).unknown_words)

    def ask(self, name: str, question: str, config: AskConfig,
            flt: SearchFilter | None = None, rerank: bool | None = None) -> Answer:
        hits = self.search(name, question, config.k, flt, rerank=rerank)
        return self.answerer(config).answer(question, hits, config,
                                            self.collection(name).unknown_words)

    def served_screen(self) -> ServedScreen:
        """The offensive-text screen (built once): RAGTUNE_SCREEN_CLASSIFIER or the packaged probe."""
        registry, embedder = self.classifiers, self.embedder  # each takes the lock itself
        with self._lock:
            if self._screen is None:
                self._screen = open_screen(embedder, self.settings.screen_threshold, registry,
                                           self.settings.screen_classifier,
                                           self.settings.screen_wordlist)
            return self._screen

    def guard(self) -> Guard | None:
        """What RAGTUNE_SCREEN does with offensive questions and answers; None when off."""
        if self.settings.screen == "off":
            return None
        return Guard(self.served_screen().screen, self.settings.screen)

    def screened_ask(self, name: str, question: str, config: AskConfig,
                     flt: SearchFilter | None = None,
                     rerank: bool | None = None) -> Iterator[str | Answer | Screening]:
        """`ask_stream` behind the screen: ends with a `Screening` unless RAGTUNE_SCREEN is off."""
        guard = self.guard()
        if guard is None:
            return self.ask_stream(name, question, config, flt, rerank)
        return guard.stream(question, lambda q: self.ask_stream(name, q, config, flt, rerank))

    def screened_chat(self, messages: Messages, sampling: SamplingConfig,
                      adapter: str | None) -> Iterator[str | Answer | Screening]:
        """`chat_stream` behind the screen, which reads the last user message as the question."""
        guard = self.guard()
        last = next((i for i in range(len(messages) - 1, -1, -1)
                     if messages[i]["role"] == "user"), None)
        if guard is None or last is None:
            return self.chat_stream(messages, sampling, adapter)

        def chat(question: str) -> Iterator[str]:
            asked = [*messages[:last], {**messages[last], "content": question}, *messages[last + 1:]]
            return self.chat_stream(asked, sampling, adapter)

        return guard.stream(messages[last]["content"], chat, grounded=False)

    def answerer(self, config: AskConfig) -> RagAnswerer:
        return RagAnswerer(lambda: self.serving.generator_for(config.adapter),
                           self.embedder.embed_batch, self.verifier)

    def chat_stream(self, messages: Messages, sampling: SamplingConfig,
                    adapter: str | None) -> Iterator[str]:
        """Plain chat with the generator; `adapter` must come from `serving.adapter_for`."""
        return self.serving.generator_for(adapter).stream(messages, sampling, adapter=adapter)

    # --- tuning: jobs run in worker processes started by the runner ---
    def worker_command(self, job: TuningJob) -> list[str]:
        return [sys.executable, "-m", "api.tuning_worker", "--job", job.id]

    def worker_env(self) -> dict[str, str]:
        """The worker's environment: this process's, plus these exact settings (which may have been
        given in code rather than in RAGTUNE_* variables)."""
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path,
                "RAGTUNE_WORKER_SETTINGS": self.settings.model_dump_json()}

    def classifier_names(self) -> set[str]:
        return {r.name for r in self.classifiers.list()}

    def recover(self) -> None:
        """Clean up after processes that stopped mid-way: fail their evaluations, remove the
        temporary folders of their collection creates and deletes. The server's start-up calls
        this once; never a CLI command or a worker, which share the data dir with a live server.
        Interrupted ingest and tuning jobs are handled by their workers' start()."""
        failed = self.evals.recover_interrupted()
        if failed:
            log.warning("evaluations %s were interrupted by a restart", failed)
        swept = self.catalog.sweep_temp()
        if swept:
            log.info("removed %d abandoned temporary collection folders", len(swept))
        stale = self.model_registry().sweep_stale()
        if stale:
            log.info("removed %d abandoned model imports", len(stale))

    def start_tuning_runner(self) -> None:
        self.tuning_runner.start()
        self._runner_started = True

    def _after_tuning(self, job: TuningJob) -> None:
        if job.state == "succeeded" and job.result and job.result.get("promote"):
            log.info("tuning job %s: the gate passed; activating adapter %s", job.id, job.spec.name)
            self.serving.activate(job.spec.name)

    def close(self) -> None:
        if self._runner_started:
            self.tuning_runner.stop()
        self.ingest_worker.stop()
        super().close()

