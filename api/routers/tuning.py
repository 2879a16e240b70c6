"""/v1/tuning: datasets and fine-tuning jobs (queued, run by worker processes, followed over SSE)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from tuning.dataset_store import DatasetRecord
from tuning.errors import DatasetError
from tuning.jobs import JobRequest, TuningJob
from tuning.service import JOB_METHODS

from .. import sse
from ..deps import ServicesDep
from ..errors import BadRequest, without_data_dir
from ..schemas import DatasetOut, GateOut, JobSpecOut, TuningJobOut
from ..services import Services
from ..uploads import copy_bounded, upload_name

router = APIRouter(prefix="/v1/tuning", tags=["tuning"])
LOG_POLL_S = 0.5
HEARTBEAT_S = 5.0  # an SSE comment this often while nothing else is sent


class Checks(BaseModel):
    model_config = ConfigDict(extra="forbid")
    regex: str | None = Field(None, description="every answer must match (re.search)")
    max_chars: int | None = Field(None, ge=1, description="longest acceptable answer")
    required_phrase: str | None = Field(None, description="every answer must contain it")


class JobCreate(BaseModel):
    """A fine-tuning job. `config` takes the TrainConfig options (the `autotrain llm` flags with
    underscores: lr, batch_size, grad_accum, epochs, max_steps, model_max_length, block_size, lora_r,
    lora_alpha, lora_dropout, target_modules, quantization, peft, early_stopping_patience, seed,
    trainer, format, text_column, ...)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="the adapter's (or classifier's) name")
    method: Literal[JOB_METHODS] | None = Field(  # type: ignore[valid-type]
        None, description="default: qlora on CUDA, lora elsewhere")
    dataset_id: str | None = Field(None, description="a stored dataset; or upload `file`")
    valid_dataset_id: str | None = None
    base_model: str | None = Field(None, description="a model name from `ragtune models list` "
                                   "(default: the serving generator)")
    config: dict[str, Any] = Field(default_factory=dict)
    label_column: str = "label"
    checks: Checks | None = None
    eval_collection: str | None = None
    eval_questions_id: str | None = None
    gate_prompts: int = Field(50, ge=1, le=1000)
    gate_max_new_tokens: int = Field(96, ge=1, le=4096)
    promote_if_better: bool = False
    mix_dataset_id: str | None = Field(None, description="a stored chat dataset mixed into the "
                                       "training split only (config.mix_share of it, default 0.25), "
                                       "e.g. grounded-QA examples; or upload `mix_file`")


def job_out(job: TuningJob, data_dir: Path) -> TuningJobOut:
    """The job as the API shows it: paths inside the data dir read relative to it."""
    spec, gate = job.spec, job.spec.gate
    return TuningJobOut(
        job_id=job.id, name=job.name, state=job.state,
        spec=JobSpecOut(
            name=spec.name, dataset_id=spec.dataset_id, method=spec.method,
            model=without_data_dir(spec.model, data_dir), valid_dataset_id=spec.valid_dataset_id,
            train=spec.train, label_column=spec.label_column, mix_dataset_id=spec.mix_dataset_id,
            gate=GateOut(regex=gate.regex, max_chars=gate.max_chars,
                         required_phrase=gate.required_phrase, eval_collection=gate.eval_collection,
                         eval_questions=gate.eval_questions, prompts=gate.prompts,
                         max_new_tokens=gate.max_new_tokens,
                         promote_if_better=gate.promote_if_better)),
        phase=job.phase, step=job.step, total_steps=job.total_steps,
        progress=round(job.step / job.total_steps, 4) if job.total_steps else 0.0,
        loss=job.loss, eval_loss=job.eval_loss, tokens_per_s=job.tokens_per_s, eta_s=job.eta_s,
        epoch=job.epoch, error=without_data_dir(job.error, data_dir) if job.error else None,
        result=_relative(job.result, data_dir), plan=_relative(spec.plan, data_dir), pid=job.pid,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested, resume=job.resume, resumable=job.resumable,
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        updated_at=job.updated_at)


def dataset_out(record: DatasetRecord) -> DatasetOut:
    return DatasetOut(id=record.id, filename=record.filename, kind=record.kind,
                      format=record.format, records=record.records, bytes=record.bytes,
                      sha256=record.sha256, created_at=record.created_at)


def _relative(value: Any, root: Path) -> Any:
    """Every string in a JSON-like value with the data dir taken out (api.errors.without_data_dir)."""
    if isinstance(value, str):
        return without_data_dir(value, root)
    if isinstance(value, dict):
        return {k: _relative(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, root) for v in value]
    return value


def _store_upload(services: Any, upload: UploadFile, kind: str, **options: Any) -> DatasetRecord:
    folder = Path(tempfile.mkdtemp(prefix="ragtune-upload-"))
    try:
        path = folder / upload_name(upload.filename or "dataset.jsonl")
        copy_bounded(upload, path, services.settings.max_upload_bytes, services.settings.max_upload_mb)
        try:
            record: DatasetRecord = services.tuning.add_dataset(path, kind=kind, **options)
        except DatasetError as exc:  # name the uploaded file, not where it was spooled
            exc.message = exc.message.replace(f"{folder}/", "")
            raise
        return record
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@router.post("/datasets", status_code=201)
async def upload_dataset(services: ServicesDep, request: Request) -> DatasetOut:
    """Store a dataset (multipart `file`; form fields `kind` = train | labelled | questions, `format`,
    `text_column`, `label_column`), checked in full first."""
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) and not hasattr(upload, "filename"):
        raise BadRequest("send the dataset as a multipart field named 'file'")
    kind = str(form.get("kind") or "train")
    options = {k: str(form[k]) for k in ("format", "text_column", "label_column") if form.get(k)}
    if "format" in options:
        options["fmt"] = options.pop("format")
    record = await run_in_threadpool(_store_upload, services, upload, kind,  # type: ignore[arg-type]
                                     **options)
    return dataset_out(record)


@router.get("/datasets")
def list_datasets(services: ServicesDep) -> list[DatasetOut]:
    return [dataset_out(r) for r in services.tuning.datasets.list()]


@router.get("/datasets/{dataset_id}")
def get_dataset(dataset_id: str, services: ServicesDep) -> DatasetOut:
    return dataset_out(services.tuning.datasets.get(dataset_id))


@router.delete("/datasets/{dataset_id}", status_code=204)
def delete_dataset(dataset_id: str, services: ServicesDep) -> None:
    services.tuning.datasets.delete(dataset_id)


async def _job_request(services: Any, request: Request) -> JobCreate:
    """The job from a JSON body, or from a multipart form: `config` (the same JSON, as a string)
    plus `file` (the training data), and optionally `valid_file` and `questions_file`."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/"):
            form = await request.form()
            raw = form.get("config") or "{}"
            body = json.loads(raw if isinstance(raw, str) else raw.file.read())  # type: ignore[union-attr]
            if not isinstance(body, dict):
                raise BadRequest(f"`config` must be a JSON object, not {type(body).__name__}")
            method = body.get("method") or "lora"
            uploads = {"file": ("dataset_id", "labelled" if method == "linear_probe" else "train"),
                       "valid_file": ("valid_dataset_id", "train"),
                       "questions_file": ("eval_questions_id", "questions"),
                       "mix_file": ("mix_dataset_id", "train")}
            for field, (key, kind) in uploads.items():
                upload = form.get(field)
                if upload is not None and hasattr(upload, "filename"):
                    options = {}
                    if kind == "labelled":
                        train = body.get("config")
                        train = train if isinstance(train, dict) else {}
                        options = {"text_column": train.get("text_column", "text"),
                                   "label_column": body.get("label_column", "label")}
                    record = await run_in_threadpool(_store_upload, services, upload,  # type: ignore[arg-type]
                                                     kind, **options)
                    body[key] = record.id
        else:
            body = await request.json()
        if not isinstance(body, dict):
            raise BadRequest(f"the job must be a JSON object, not {type(body).__name__}")
        return JobCreate.model_validate(body)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the job config is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the job config is nested too deeply to read") from None
    except ValidationError as exc:
        parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise BadRequest("; ".join(parts)) from None


def registered_model(services: Any, name: str) -> str:
    """The directory of a model in `ragtune models list`. Over HTTP a job trains only on those:
    a path or hub id would let a request read (or fetch) any model; the CLI takes paths."""
    registry = services.model_registry()
    names = sorted(m.name for m in registry.list())
    if name not in names:
        raise BadRequest(f"base_model {name!r} is not a registered model (registered: "
                         f"{', '.join(names) or 'none'}); import one with `ragtune models import`, "
                         "or give a path with `ragtune tune start --model`")
    return str(registry.path(name))


def job_request(req: JobCreate, services: Any) -> JobRequest:
    """The job as the tuning desk takes it: a base model named over HTTP is a registered one."""
    return JobRequest(
        name=req.name, dataset_id=req.dataset_id, method=req.method,
        model=registered_model(services, req.base_model) if req.base_model else None,
        valid_dataset_id=req.valid_dataset_id, train=req.config, label_column=req.label_column,
        checks=req.checks.model_dump(exclude_none=True) if req.checks else None,
        eval_collection=req.eval_collection, eval_questions=req.eval_questions_id,
        gate_prompts=req.gate_prompts, gate_max_new_tokens=req.gate_max_new_tokens,
        promote_if_better=req.promote_if_better, mix_dataset_id=req.mix_dataset_id)


@router.post("/jobs", status_code=201)
async def create_job(services: ServicesDep, request: Request) -> TuningJobOut:
    """Queue a fine-tuning job; everything is checked first (data errors name the line)."""
    req = await _job_request(services, request)
    # checking the data (tokenizing every example) must not hold up the event loop
    job = await run_in_threadpool(
        lambda: services.tuning.submit(services.tuning.plan(job_request(req, services)),
                                       services.classifier_names()))
    services.tuning_runner.wake()
    return job_out(job, services.settings.data_dir)


@router.get("/jobs")
def list_jobs(services: ServicesDep) -> list[TuningJobOut]:
    return [job_out(j, services.settings.data_dir) for j in services.tuning.store.list()]


@router.get("/jobs/{job_id}")
def get_job(job_id: str, services: ServicesDep) -> TuningJobOut:
    return job_out(services.tuning.store.get(job_id), services.settings.data_dir)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, services: ServicesDep) -> TuningJobOut:
    return job_out(services.tuning.store.cancel(job_id), services.settings.data_dir)


@router.post("/jobs/{job_id}/resume")
def resume_job(job_id: str, services: ServicesDep) -> TuningJobOut:
    """Queue a failed, cancelled or interrupted job again; it continues from its last checkpoint."""
    job = services.tuning.store.requeue(job_id)
    services.tuning_runner.wake()
    return job_out(job, services.settings.data_dir)


@router.get("/jobs/{job_id}/logs")
async def job_logs(job_id: str, services: ServicesDep, request: Request,
                   follow: bool = True) -> StreamingResponse:
    """Server-sent events: `log` (a line of training.log or the worker's log), `progress` (the job,
    whenever it changes) and, once the job has finished (or at once with follow=false), `end`.
    A quiet stream sends an SSE comment every HEARTBEAT_S."""
    job = await run_in_threadpool(services.tuning.store.get, job_id)
    return sse.stream(_follow(services, job, request, follow),
                      lambda exc: sse.event("error", {"detail": str(exc)}))


async def _follow(services: Services, job: TuningJob, request: Request,
                  follow: bool) -> AsyncIterator[str]:
    """The job's events until it finishes or the client leaves. Async, so no thread waits out
    the polls: a client that leaves cancels it at its next await (or, where the server does not
    say so, the next heartbeat's write fails); blocking reads run in the thread pool."""
    desk, data_dir = services.tuning, services.settings.data_dir
    offsets: dict[str, int] = {}
    seen = ""
    last_sent = time.monotonic()
    while True:
        lines = await run_in_threadpool(list, desk.read_logs(job, offsets))
        for source, line in lines:
            yield sse.event("log", {"source": source, "line": line})
        changed = job.updated_at != seen
        if changed:
            seen = job.updated_at
            yield sse.event("progress", job_out(job, data_dir).model_dump())
        if job.finished or not follow:
            yield sse.event("end", job_out(job, data_dir).model_dump())
            return
        if lines or changed:
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= HEARTBEAT_S:
            yield sse.HEARTBEAT
            last_sent = time.monotonic()
        if await request.is_disconnected():
            return
        await anyio.sleep(LOG_POLL_S)
        job = await run_in_threadpool(desk.store.get, job.id)
