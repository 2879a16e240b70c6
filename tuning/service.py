"""The tuning front desk: stores datasets, checks a job completely before queueing it, and answers
questions about jobs. Shared by the HTTP API and the CLI; the runner and workers do the training."""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from generation.adapter_registry import KEEP_SET, AdapterRegistry, check_name
from generation.errors import AdapterNotFound

from .base import mixed_in
from .config import METHODS, TrainConfig
from .dataset_store import DatasetStore
from .datasets import load_samples, split
from .errors import DatasetError, InvalidConfig, TuningError
from .jobs import PROBE, GateSpec, JobRequest, JobSpec, JobStore, TuningJob
from .runner import WORKER_LOG
from .sizing import RunPlan, plan_run

UNSERVED = ("prefix", "prompt")
DEFAULT_MIX_SHARE = TrainConfig.mix_share
# A keep set's examples are long RAG prompts (about 450 tokens against a behaviour example's 80).
# 0.15 kept kb_dev for the marker and persona tunes but not for the sources tune, whose answers
# are laid out as `ask` answers; 0.3 kept it there too (README "Behaviour tunes, measured")
KEEP_SHARE = 0.3

JOB_METHODS = (*METHODS, PROBE)
RESERVED = ("model", "data_path", "valid_path", "output_dir", "name", "method", "resume", "mix_path")
PROBE_OPTIONS = ("text_column", "seed", "val_fraction", "trainer")


class TuningDesk:
    """Jobs, datasets and runs under `root`; trained adapters go to `adapters`. A job that names no
    base model trains on `serving_model()` (called only then: resolving it may import the model);
    `device` picks the default method; `open_collection(name)` raises when a gate's evaluation
    collection cannot be used."""

    def __init__(self, root: Path, adapters: AdapterRegistry, device: str = "auto",
                 serving_model: Callable[[], str] | None = None,
                 open_collection: Callable[[str], object] | None = None) -> None:
        self.root = Path(root)
        self.store = JobStore(self.root / "jobs.sqlite")
        self.datasets = DatasetStore(self.root / "datasets")
        self.runs_root = self.root / "runs"
        self.adapters = adapters
        self.device = device
        self._serving_model = serving_model
        self._open_collection = open_collection

    def plan(self, request: JobRequest) -> JobSpec:
        """The JobSpec for `request`, its defaults filled in: the method (qlora on CUDA, lora
        elsewhere), the base model (the serving generator) and the gate. The eval collection must
        be usable now, not after training; the data is checked by `submit`."""
        if not request.dataset_id:
            raise InvalidConfig("give the training data: a stored `dataset_id`, or upload `file`")
        gate = gate_spec(request.checks, eval_collection=request.eval_collection,
                         eval_questions=request.eval_questions, prompts=request.gate_prompts,
                         max_new_tokens=request.gate_max_new_tokens,
                         promote_if_better=request.promote_if_better)
        if gate.eval_collection and self._open_collection is not None:
            self._open_collection(gate.eval_collection)
        method = request.method or default_method(self.device, request.train)
        model = "" if method == PROBE else request.model or self._default_model()
        return JobSpec(name=request.name, dataset_id=request.dataset_id, method=method, model=model,
                       valid_dataset_id=request.valid_dataset_id, train=dict(request.train),
                       gate=gate, label_column=request.label_column,
                       mix_dataset_id=request.mix_dataset_id)

    def _default_model(self) -> str:
        if self._serving_model is None:
            raise ValueError("name the base model to train on: this desk knows no serving model")
        return self._serving_model()

    def check(self, spec: JobSpec, classifier_names: set[str] | None = None) -> RunPlan | None:
        """Everything that can be known wrong before training, raised as ValueError/DatasetError;
        the run's plan when the data could be measured (tuning.sizing)."""
        check_name(spec.name)
        if spec.method not in JOB_METHODS:
            raise InvalidConfig(f"method {spec.method!r} must be one of {', '.join(JOB_METHODS)}")
        if self.store.active_with_name(spec.name):
            raise TuningError(f"a tuning job named {spec.name!r} is already queued or running")
        bad = sorted(set(spec.train) & set(RESERVED))
        if bad:
            raise InvalidConfig(f"config may not set {', '.join(bad)}: they are given by the job itself")
        lengths = None
        if spec.method == PROBE:
            self._check_probe(spec, classifier_names or set())
        else:
            lengths = self._check_training(spec)
        if spec.gate.eval_questions:
            self._dataset(spec.gate.eval_questions, "questions", "eval_questions")
        return self._plan(spec, lengths)

    def _dataset(self, ds_id: str, kind: str, role: str) -> Path:
        record = self.datasets.get(ds_id)
        if record.kind != kind:
            raise InvalidConfig(f"{role} {ds_id} was stored as a {record.kind} dataset; this needs a "
                                f"{kind} dataset")
        return self.datasets.path(ds_id)

    def _check_training(self, spec: JobSpec) -> list[int] | None:
        """Check the data and options; the token lengths of the training split (None when the
        model is not a local directory whose tokenizer can count them)."""
        if spec.method in UNSERVED:
            raise InvalidConfig(
                f"method {spec.method!r} is refused: {spec.method} tuning trains virtual tokens that "
                "the serving generator cannot load beside its LoRA adapters, so the result could be "
                "neither gated nor served; use lora (or qlora)")
        if spec.name in {r.name for r in self.adapters.list()}:
            raise TuningError(f"adapter {spec.name!r} already exists; pick another name "
                              "(or delete the adapter first)")
        path = self._dataset(spec.dataset_id, "train", "dataset")
        valid = self._dataset(spec.valid_dataset_id, "train", "valid dataset") \
            if spec.valid_dataset_id else None
        try:
            config = TrainConfig(model=spec.model or "-", data_path=str(path), output_dir="-",
                                 name=spec.name, method=spec.method,
                                 valid_path=str(valid) if valid else None, **spec.train)
        except TypeError as exc:
            known = ", ".join(f for f in TrainConfig.__dataclass_fields__ if f not in RESERVED)
            raise InvalidConfig(f"unknown training option ({exc}); known options: {known}") from None
        self._stack_on(spec)  # a named init_adapter must be a registered LoRA
        samples = [load_samples(p, config.format, config.text_column)  # the chosen format and
                   for p in (path, valid) if p is not None]              # column, not just 'auto'
        train = samples[0] if valid else split(samples[0], config.val_fraction, config.seed)[0]
        if mix := self._mix_path(spec):
            train += mixed_in(dataclasses.replace(config, mix_path=str(mix),
                                                  mix_share=self._share(spec)), len(train))
        if Path(spec.model).is_dir():
            return self._check_fits(spec.model, samples[0], train, config)
        return None

    def _stack_on(self, spec: JobSpec) -> tuple[str, str] | None:
        """(name, directory) of the adapter the run starts from: the one the job names, or by
        default the served LoRA adapter when it was trained on the job's base; None for a fresh
        adapter (`init_adapter: ""`, another method, or nothing served)."""
        named = spec.train.get("init_adapter")
        if spec.method not in ("lora", "qlora") or named == "":
            return None
        name = named or self.adapters.active()
        if not name or name == "base":
            return None
        try:
            record = self.adapters.get(str(name))
        except AdapterNotFound:
            if named:
                raise InvalidConfig(f"init_adapter {named!r} is not a registered adapter (registered: "
                                    f"{', '.join(r.name for r in self.adapters.list()) or 'none'})"
                                    ) from None
            return None
        fits = record.method in ("lora", "qlora") and record.base_model == Path(spec.model).name
        if named and not fits:
            raise InvalidConfig(f"init_adapter {named!r} is a {record.method} adapter of "
                                f"{record.base_model!r}; it cannot start a LoRA on {spec.model!r}")
        return (record.name, str(record.path)) if fits else None

    @staticmethod
    def _check_fits(model: str, samples: list[Any], train: list[Any], config: TrainConfig) -> list[int]:
        """Refuse data of which no example keeps an answer token within the length limit; the
        token lengths of the training split."""
        from transformers import AutoTokenizer

        from .tokenization import tokenize_samples

        tokenizer = AutoTokenizer.from_pretrained(model)
        kept, _ = tokenize_samples(tokenizer, samples, config.max_length, config.train_on)
        if not kept:
            raise DatasetError(f"no training example keeps an answer token within {config.max_length} "
                               "tokens once the chat template is applied; raise --model-max-length "
                               "or shorten the prompts")
        kept_train, _ = tokenize_samples(tokenizer, train, config.max_length, config.train_on)
        return [len(e.input_ids) for e in kept_train]

    def _plan(self, spec: JobSpec, lengths: list[int] | None) -> RunPlan | None:
        """The run's plan from the training split's token lengths and this machine's speed."""
        if not lengths:
            return None
        rate, source = self.measured_rate(spec.model)
        mix = self._mix_path(spec)
        mixed = self._mixed(spec, mix)
        plan = plan_run(lengths, spec.train, spec.method, model_parameters(spec.model), rate, source,
                        mixed=mixed)
        stack = self._stack_on(spec)
        warnings = list(plan.warnings)
        if stack and mix is None:
            warnings.append(f"this trains the served adapter {stack[0]} further on this data alone: "
                            "what it does now may be lost (kb_dev accuracy fell 0.10-0.27 in the "
                            "README's runs); mix some of its kind of examples in with mix_dataset_id")
        keep = stack is not None and mix is not None and not spec.mix_dataset_id
        mix_from = (f"dataset {spec.mix_dataset_id}" if spec.mix_dataset_id
                    else f"the keep set of {stack[0]}" if keep and stack else None)
        return dataclasses.replace(plan, mixed=mixed, mix_from=mix_from,
                                   keep_set=str(mix) if keep else None,
                                   keep_share=KEEP_SHARE if keep and "mix_share" not in spec.train
                                   else None,
                                   stacked_on=stack[0] if stack else None,
                                   init_adapter=stack[1] if stack else None, warnings=warnings)

    def _mix_path(self, spec: JobSpec) -> Path | None:
        """The examples mixed into the training split: the job's mix dataset; else, for a LoRA run
        that starts from an adapter carrying a keep set (KEEP_SET in its directory: examples of
        what it does, like the packaged grounded-QA adapter's), that keep set, unless the job sets
        mix_share 0."""
        if spec.mix_dataset_id:
            return self._dataset(spec.mix_dataset_id, "train", "mix dataset")
        stack = self._stack_on(spec)
        if stack is None or not float(spec.train.get("mix_share", KEEP_SHARE)):
            return None
        keep = Path(stack[1]) / KEEP_SET
        return keep if keep.is_file() else None

    @staticmethod
    def _share(spec: JobSpec) -> float:
        """The mixed-in share of the training split: the job's mix_share, else the default for a
        mix dataset or for a keep set."""
        return float(spec.train.get("mix_share", DEFAULT_MIX_SHARE if spec.mix_dataset_id
                                    else KEEP_SHARE))

    def _mixed(self, spec: JobSpec, mix: Path | None) -> int:
        """How many examples of `mix` (`_mix_path`) are added: mix_share of the training split, as
        many as it has."""
        if mix is None:
            return 0
        own = load_samples(self.datasets.path(spec.dataset_id), spec.train.get("format", "auto"),
                           spec.train.get("text_column", "text"))
        n = len(own) if spec.valid_dataset_id else len(split(own, spec.train.get("val_fraction", 0.1),
                                                                 spec.train.get("seed", 42))[0])
        share = self._share(spec)
        return min(round(n * share / (1 - share)), len(load_samples(mix, "auto")))

    def measured_rate(self, model: str, last: int = 3) -> tuple[float | None, str]:
        """Median train tokens/s of the last jobs that trained `model` here, and where it came from."""
        rates = [float(j.result["train"]["tokens_per_s"]) for j in self.store.list(limit=200)
                 if j.state == "succeeded" and j.spec.model == model and j.result
                 and (j.result.get("train") or {}).get("tokens_per_s")][:last]
        if not rates:
            return None, ""
        return statistics.median(rates), f"(measured: last {len(rates)} job{'s' * (len(rates) > 1)})"

    def _check_probe(self, spec: JobSpec, classifier_names: set[str]) -> None:
        if spec.name in classifier_names:
            raise TuningError(f"classifier {spec.name!r} already exists; pick another name")
        unknown = sorted(set(spec.train) - set(PROBE_OPTIONS))
        if unknown:
            raise InvalidConfig(f"a linear probe takes only {', '.join(PROBE_OPTIONS)} as options, "
                                f"not {', '.join(unknown)}")
        from .probe import load_labelled
        from .probe_fit import PROBE_TRAINERS

        if spec.train.get("trainer", "sklearn") not in PROBE_TRAINERS:
            raise InvalidConfig(f"a linear probe's trainer {spec.train['trainer']!r} must be one of "
                                f"{', '.join(PROBE_TRAINERS)}")
        path = self._dataset(spec.dataset_id, "labelled", "dataset")
        load_labelled(path, text_column=spec.train.get("text_column", "text"),
                      label_column=spec.label_column)
        if spec.gate.declared:
            raise InvalidConfig("a linear probe has no generation gate: drop checks and eval_collection")

    def submit(self, spec: JobSpec, classifier_names: set[str] | None = None) -> TuningJob:
        """Check the job, plan its run, and queue it with the plan in its record."""
        plan = self.check(spec, classifier_names)
        if plan is not None:
            spec = dataclasses.replace(spec, plan=plan.to_dict())
        return self.store.create(spec)

    def add_dataset(self, src: Path, filename: str | None = None, kind: str = "train",
                    **options: Any) -> Any:
        return self.datasets.add(src, filename, kind, **options)

    def log_paths(self, job: TuningJob) -> dict[str, Path]:
        run = self.runs_root / job.id
        return {"training": run / "training.log", "worker": run / WORKER_LOG}

    def read_logs(self, job: TuningJob, offsets: dict[str, int]) -> Iterator[tuple[str, str]]:
        """(source, line) for every complete line written since `offsets` (updated in place)."""
        for source, path in self.log_paths(job).items():
            try:
                with path.open("rb") as f:
                    f.seek(offsets.get(source, 0))
                    data = f.read()
            except OSError:
                continue
            complete = data[: data.rfind(b"\n") + 1]
            offsets[source] = offsets.get(source, 0) + len(complete)
            for line in complete.decode(errors="replace").splitlines():
                yield source, line


def default_method(device: str = "auto", train: dict[str, Any] | None = None) -> str:
    """QLoRA on CUDA (a 4-bit base leaves room for larger models), LoRA elsewhere: on CPU, NF4
    de-quantises every weight at every step and saves no memory on small models. Options that
    choose the method themselves (peft false, a quantization) are left to TrainConfig."""
    train = train or {}
    if "peft" in train or "quantization" in train or device == "cpu":
        return "lora"
    try:
        import torch

        return "qlora" if torch.cuda.is_available() else "lora"
    except ImportError:  # pragma: no cover - torch is a dependency
        return "lora"


def model_parameters(model: str) -> int | None:
    """About how many weights the model in directory `model` has (from its config.json), or None."""
    try:
        cfg = json.loads((Path(model) / "config.json").read_text())
        hidden, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
        inner = int(cfg.get("intermediate_size", 4 * hidden))
        return layers * (4 * hidden * hidden + 3 * hidden * inner) + int(cfg["vocab_size"]) * hidden
    except (OSError, ValueError, KeyError, TypeError):
        return None


def gate_spec(checks: dict[str, Any] | None, **kw: Any) -> GateSpec:
    """A GateSpec from the request's `checks` object and gate options (ValueError if wrong)."""
    checks = dict(checks or {})
    unknown = sorted(set(checks) - {"regex", "max_chars", "required_phrase"})
    if unknown:
        raise InvalidConfig(f"unknown check(s) {', '.join(unknown)}: use regex, max_chars, required_phrase")
    return GateSpec(**checks, **kw)


__all__ = ["DatasetError", "TuningDesk", "gate_spec"]
