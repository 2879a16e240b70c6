"""Wiring: turns Settings into the long-lived objects the edges use (catalog, embedder, workers).

Heavy models load lazily, once per process, on first use. Adapters live in `data_dir/adapters`;
the active one (`active.json` there) answers requests that name none, and is loaded onto the
serving generator beside its base weights (never by reloading the base) when first needed.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from generation.adapters import BASE, PACKAGED_ADAPTERS
from generation.answerability import DEFAULT_MODEL as DEFAULT_ANSWERABILITY
from generation.answerability import AnswerabilityModel
from generation.errors import GenerationError
from generation.eval_runs import EvalStore
from generation.generator import AdapterHost, Generator, Messages, SamplingConfig
from generation.grounding import Example
from generation.rag import Answer, AskConfig, RagAnswerer
from ingest.chunking import Chunker, ChunkingConfig
from ingest.jobs import IngestWorker, Job
from ingest.loaders import ArchiveLimits, iter_documents
from ingest.pipeline import FileResult, IngestPipeline, IngestReport
from retrieval.catalog import Catalog
from retrieval.collection import Collection, CollectionConfig
from retrieval.embedder import Embedder, SentenceTransformerEmbedder
from retrieval.errors import EmbedderMismatch
from retrieval.types import Hit, SearchFilter
from tuning.adapters import AdapterRecord, AdapterRegistry
from tuning.errors import AdapterMismatch, AdapterNotFound, TuningError
from tuning.jobs import TuningJob
from tuning.probe import ClassifierRegistry
from tuning.runner import TuningRunner
from tuning.service import TuningDesk

from .settings import Settings

log = logging.getLogger("ragtune")


class Services:
    def __init__(self, settings: Settings, embedder: Embedder | None = None,
                 generator: Generator | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(settings.data_dir, use_gpu=settings.faiss_gpu)
        self._embedder = embedder
        self._generator = generator
        self._lock = threading.Lock()
        self._gen_lock = threading.Lock()
        self.ingest_worker = IngestWorker(settings.data_dir, self._run_job)
        self.evals = EvalStore(settings.data_dir / "evals")
        self.adapters = AdapterRegistry(settings.data_dir / "adapters")
        self._adapter_lock = threading.Lock()
        self._loaded_adapters: dict[str, str] = {}  # name -> created_at of the copy loaded
        self._tokenizer: Any = None
        self.tuning = TuningDesk(settings.data_dir / "tuning", self.adapters)
        self.tuning_runner = TuningRunner(self.tuning.store, self.tuning.runs_root,
                                          self.worker_command, on_finished=self._after_tuning,
                                          env=self.worker_env())
        self._runner_started = False
        self._classifiers: ClassifierRegistry | None = None
        self._answerability: AnswerabilityModel | None = None

    @property
    def classifiers(self) -> ClassifierRegistry:
        """Linear-probe classifiers, under data_dir/classifiers."""
        with self._lock:
            if self._classifiers is None:
                self._classifiers = ClassifierRegistry(self.settings.data_dir / "classifiers")
            return self._classifiers

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = SentenceTransformerEmbedder(
                    self.settings.embedder, device=self.settings.torch_device,
                    batch_size=self.settings.embed_batch_size)
            return self._embedder

    @property
    def generator(self) -> Generator:
        with self._gen_lock:
            if self._generator is None:
                from generation.generator import HFGenerator
                from generation.loading import LoadConfig, load_model, resolve_quantization

                path = self.generator_path()
                mode, why = resolve_quantization(self.settings.quantization, path,
                                                 self.settings.device)
                log.info("loading generator %s as %s (%s)", path, mode, why)
                loaded = load_model(path, LoadConfig(quantization=mode,
                                                     device=self.settings.device))
                self._generator = HFGenerator(loaded)
                log.info("generator %s loaded (%s on %s): %.0f MB in memory, %.1f s, context %d",
                         loaded.name, loaded.quantization, loaded.device,
                         loaded.footprint_bytes / 1e6, loaded.load_seconds, loaded.context_length)
            return self._generator

    @property
    def generator_loaded(self) -> bool:
        return self._generator is not None

    def model_registry(self) -> Any:
        from generation.models import ModelRegistry

        return ModelRegistry(self.settings.data_dir / "models")

    def generator_path(self, progress: Callable[[str], None] | None = None) -> str:
        """The configured generator as a loadable path: a registry name (the default one is
        imported from its packaged GGUF on first use), a local directory, or a hub id."""
        from generation.models import DEFAULT_MODEL

        name, registry = self.settings.generator, self.model_registry()
        if name == DEFAULT_MODEL:
            return str(registry.ensure_default(progress))
        if name in {m.name for m in registry.list()}:
            return str(registry.path(name))
        return name

    def ask_config(self, k: int = 5, max_new_tokens: int | None = None,
                   temperature: float = 0.0, mode: str = "zero_shot",
                   examples: tuple[Example, ...] = (), adapter: str | None = None,
                   answer_style: str | None = None) -> AskConfig:
        """`adapter` as a request gives it: a name, "base", or None for the active adapter.

        The answerability classifier applies only to the adapter and answer style it was fitted
        with (its features are that model's confidences and that style's line ranking); other
        adapters and styles, and the base, answer without it."""
        serving = self.serving_adapter(adapter)
        style = answer_style or self.settings.answer_style
        classifier = self.answerability_model() if self.settings.answerability else None
        if classifier is not None and not classifier.fits(serving or BASE, style):
            classifier = None
        return AskConfig(k=k, max_new_tokens=max_new_tokens or self.settings.max_new_tokens,
                         temperature=temperature, mode=mode, examples=examples,
                         min_score=self.settings.min_score,
                         focus_sentences=self.settings.focus_sentences,
                         support_threshold=self.settings.support_threshold,
                         refuse_ungrounded=self.settings.refuse_ungrounded,
                         span_decoding=self.settings.span_decoding,
                         answer_style=style,
                         answerability=classifier, adapter=serving)

    def answerability_model(self) -> AnswerabilityModel:
        """The answerability classifier (read once): RAGTUNE_ANSWERABILITY_MODEL or the packaged."""
        with self._lock:
            if self._answerability is None:
                path = self.settings.answerability_model or DEFAULT_ANSWERABILITY
                self._answerability = AnswerabilityModel.load(path)
            return self._answerability

    def ask_stream(self, name: str, question: str, config: AskConfig,
                   flt: SearchFilter | None = None) -> Iterator[str | Answer]:
        hits = self.search(name, question, config.k, flt)
        return self.answerer(config).stream(question, hits, config)

    def ask(self, name: str, question: str, config: AskConfig,
            flt: SearchFilter | None = None) -> Answer:
        hits = self.search(name, question, config.k, flt)
        return self.answerer(config).answer(question, hits, config)

    def answerer(self, config: AskConfig) -> RagAnswerer:
        return RagAnswerer(lambda: self.generator_for(config.adapter), self.embedder.embed_batch)

    def chat_stream(self, messages: Messages, sampling: SamplingConfig,
                    adapter: str | None) -> Iterator[str]:
        """Plain chat with the generator; `adapter` must come from `serving_adapter`."""
        return self.generator_for(adapter).stream(messages, sampling, adapter=adapter)

    # adapters

    def serving_adapter(self, requested: str | None = None) -> str | None:
        """The adapter that answers a request: `requested` ("base": none), else the active one.

        None means the base model. A requested name must be registered (AdapterNotFound now, not
        halfway through a stream); compatibility is checked when it is loaded.
        """
        name = self.adapters.active() if requested is None else requested
        if name is None or name == BASE:
            return None
        self.adapters.get(name)
        return name

    def generator_for(self, adapter: str | None) -> Generator:
        """The generator, with `adapter` (if any) loaded onto it beside the base weights."""
        if adapter is not None and not self.generator_loaded:
            self._check_servable(adapter)  # a wrong adapter is refused before the base loads
        gen = self.generator
        if adapter is not None:
            self._load_adapter(gen, adapter)
        return gen

    def _load_adapter(self, gen: Generator, name: str) -> AdapterRecord:
        if not isinstance(gen, AdapterHost):
            raise TuningError(f"the generator {gen.name!r} cannot load adapters")
        with self._adapter_lock:
            record = self.adapters.get(name)
            if name in gen.adapters and self._loaded_adapters.get(name) == record.created_at:
                return record
            record = self._check_servable(name)
            if name in gen.adapters:  # deleted and registered again under the same name
                gen.remove_adapter(name)
            gen.add_adapter(name, record.path)
            self._loaded_adapters[name] = record.created_at
            log.info("adapter %s loaded onto %s (%s)", name, gen.name, record.method)
            return record

    def _check_servable(self, name: str) -> AdapterRecord:
        self.adapters.get(name)  # AdapterNotFound before the base is read
        record = self.adapters.check_compatible(name, self.generator_path(), self._base_tokenizer())
        if record.method not in ("lora", "qlora"):
            raise TuningError(f"adapter {name!r} is {record.method}; only LoRA adapters can be "
                              "served beside the base (merge it, or serve it as a model)")
        return record

    def _base_tokenizer(self) -> Any:
        """The serving tokenizer: the loaded generator's, else read from the base directory."""
        tokenizer = getattr(self._generator, "tokenizer", None)
        if tokenizer is not None:
            return tokenizer
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            path = self.generator_path()
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(path)
            except OSError as exc:  # no such directory, and no hub to fetch it from
                raise GenerationError(f"cannot read the generator's tokenizer from {path!r}: "
                                      f"{exc}") from exc
        return self._tokenizer

    def loaded_adapters(self) -> tuple[str, ...]:
        gen = self._generator
        return gen.adapters if isinstance(gen, AdapterHost) else ()

    def activate_adapter(self, name: str) -> AdapterRecord:
        """Serve `name` for requests that name no adapter, in this and every other process.

        Checked against the serving base and tokenizer first; loaded onto the generator now if
        the generator is loaded (else on its first request).
        """
        record = self._check_servable(name)
        if self.generator_loaded:
            self._load_adapter(self.generator, name)
        self.adapters.set_active(name)
        return record

    def install_packaged_adapters(self) -> list[str]:
        """Register the adapters shipped with ragtune (generation/packaged); on a data dir where
        no adapter was ever chosen, serve `settings.default_adapter` if it fits the generator.
        Returns what was done, for the user."""
        done = []
        shipped = PACKAGED_ADAPTERS.iterdir() if PACKAGED_ADAPTERS.is_dir() else iter(())
        for src in sorted(p for p in shipped if p.is_dir()):
            record = self.adapters.install(src)
            if record is not None:
                done.append(f"installed adapter {record.name}")
        name = self.settings.default_adapter
        if name and self.adapters.never_chosen():
            try:
                self.activate_adapter(name)
                done.append(f"serving adapter {name} (`ragtune adapters deactivate` for the base)")
            except (AdapterNotFound, AdapterMismatch) as exc:
                done.append(f"serving the base model: {exc}")
        return done

    def deactivate_adapter(self) -> None:
        """Serve the base model alone; loaded adapters stay loaded for requests that name them."""
        self.adapters.set_active(None)

    def merge_adapter(self, name: str, out_dir: Path) -> list[str]:
        """Fold LoRA adapter `name` into an fp32 copy of the serving base, saved in `out_dir`;
        returns warnings about how the merged model differs from base + adapter as served."""
        from generation.loading import resolve_quantization

        record = self._check_servable(name)
        base = self.generator_path()
        warnings = [w for w in [self.adapters.merge(name, base, out_dir)] if w]
        mode, _ = resolve_quantization(self.settings.quantization, base, self.settings.device)
        if mode in ("nf4", "int8"):
            warnings.append(
                f"the serving base is loaded {mode} (RAGTUNE_QUANTIZATION); {out_dir} holds "
                f"unquantised merged weights, and serving it {mode} quantises base and adapter "
                f"together: a different model from the {mode} base + adapter {record.name!r}")
        return warnings

    def delete_adapter(self, name: str) -> None:
        """Unregister `name` (refused while active) and unload it from the generator."""
        self.adapters.delete(name)
        with self._adapter_lock:
            gen = self._generator
            if isinstance(gen, AdapterHost) and name in gen.adapters:
                gen.remove_adapter(name)
            self._loaded_adapters.pop(name, None)

    @property
    def archive_limits(self) -> ArchiveLimits:
        return ArchiveLimits(max_entries=self.settings.zip_max_entries,
                             max_total_bytes=int(self.settings.zip_max_mb * 1024 * 1024))

    def create_collection(self, name: str, chunk_size: int | None = None,
                          chunk_overlap: int | None = None) -> Collection:
        emb = self.embedder
        size = chunk_size if chunk_size is not None else self.settings.chunk_size
        overlap = chunk_overlap if chunk_overlap is not None else min(
            self.settings.chunk_overlap, size // 4)
        return self.catalog.create(CollectionConfig(name=name, embedder=emb.name, dim=emb.dim,
                                                    chunk_size=size, chunk_overlap=overlap))

    def collection(self, name: str) -> Collection:
        coll = self.catalog.get(name)
        emb = self.embedder
        if coll.config.embedder != emb.name or coll.config.dim != emb.dim:
            raise EmbedderMismatch(
                f"collection {name!r} was built with embedder {coll.config.embedder!r} "
                f"(dim {coll.config.dim}) but ragtune is running {emb.name!r} (dim {emb.dim}); "
                "set RAGTUNE_EMBEDDER back or re-ingest into a new collection")
        return coll

    def pipeline(self, coll: Collection, metadata: dict[str, Any] | None = None) -> IngestPipeline:
        chunker = Chunker(ChunkingConfig(coll.config.chunk_size, coll.config.chunk_overlap),
                          self.embedder.count_tokens)
        return IngestPipeline(coll, self.embedder, chunker, extra_metadata=metadata)

    def ingest_paths(self, name: str, paths: list[Path], metadata: dict[str, Any] | None = None,
                     on_result: Callable[[FileResult], None] | None = None) -> IngestReport:
        coll = self.collection(name)
        items = iter_documents(paths, archive_limits=self.archive_limits)
        return self.pipeline(coll, metadata).run(items, on_result=on_result)

    def _run_job(self, job: Job, folder: Path,
                 on_result: Callable[[FileResult], None]) -> IngestReport:
        paths = [folder / f for f in job.files]
        report = self.ingest_paths(job.collection, paths, job.metadata, on_result)
        self.collection(job.collection).settle_keyword_index()  # searchable once it says succeeded
        return report

    def search(self, name: str, query: str, k: int, flt: SearchFilter | None = None,
               mode: str | None = None) -> list[Hit]:
        coll = self.collection(name)
        return coll.search(self.embedder.embed_batch([query]), k, flt, query_texts=[query],
                           mode=mode or self.settings.search_mode)[0]

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

    def start_tuning_runner(self) -> None:
        self.tuning_runner.start()
        self._runner_started = True

    def _after_tuning(self, job: TuningJob) -> None:
        if job.state == "succeeded" and job.result and job.result.get("promote"):
            log.info("tuning job %s: the gate passed; activating adapter %s", job.id, job.spec.name)
            self.activate_adapter(job.spec.name)

    def close(self) -> None:
        if self._runner_started:
            self.tuning_runner.stop()
        self.ingest_worker.stop()
        self.catalog.close()
