"""/v1/tasks: the task templates (tasks/), listed and run on one input.

`POST /v1/tasks/{name}` runs a template with the generator (the base model unless an `adapter` is
named: the served adapters are tuned for grounded answers, not these tasks); QA takes its passage as
`context` or retrieves it from a `collection`; a classification task can instead be answered by a
trained linear-probe `classifier` (see /v1/classifiers).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from tasks import MODES, TEMPLATES, TaskInputError, TaskTemplate, get_template, run_task
from tasks.library import eval_items
from tasks.templates import TaskInput

from ..deps import ServicesDep
from ..errors import Forbidden
from ..schemas import Strict

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
MODE_PATTERN = "^(" + "|".join(MODES) + ")$"


class TaskOut(BaseModel):
    name: str
    title: str
    kind: str = Field(..., description="choice | text | json: what the output is")
    modes: list[str]
    metric: str = Field(..., description="the score its evaluation set reports")
    choices: list[str] = Field(..., description="fixed labels (choice tasks); else given per input")
    fields: list[str] = Field(..., description="the JSON keys, for a json task")
    needs_context: bool = Field(..., description="needs a passage: `context` or a `collection`")
    needs_target: bool = Field(..., description="needs the `target` word (coreference)")
    probe_trainable: bool = Field(..., description="a classification with a labelled split for a "
                                                   "linear probe")
    eval_items: int


class TaskRunRequest(Strict):
    text: str = Field(..., min_length=1, max_length=8000, examples=["The staff were lovely."])
    mode: str = Field("zero_shot", pattern=MODE_PATTERN)
    context: str | None = Field(None, max_length=8000, description="the passage, for QA")
    collection: str | None = Field(None, description="QA: retrieve the passages from this collection")
    k: int = Field(3, ge=1, le=10, description="passages retrieved from `collection`")
    choices: list[str] | None = Field(None, min_length=2, max_length=20,
                                      description="options to choose among (coreference)")
    target: str | None = Field(None, max_length=200, description="the word to resolve (coreference)")
    adapter: str | None = Field(None, description="an adapter to run with; default: the base model")
    max_new_tokens: int | None = Field(None, ge=1, le=512)
    classifier: str | None = Field(None, description="answer a classification task with this "
                                                     "linear-probe classifier instead of the model")


class TaskRunOut(BaseModel):
    task: str
    mode: str = Field(..., description="the prompting mode, or linear_probe")
    output: Any = Field(..., description="a choice (null if the reply named none), text, or an "
                                         "object of the fields (null if no JSON was found)")
    reply: str = Field(..., description="the model's whole reply (the label, for a probe)")
    seconds: float
    sources: list[str] = Field(default_factory=list, description="passages' sources, for a collection")


def task_out(t: TaskTemplate) -> TaskOut:
    return TaskOut(name=t.name, title=t.title, kind=t.kind, modes=list(MODES), metric=t.metric,
                   choices=list(t.choices), fields=list(t.fields), needs_context=t.needs_context,
                   needs_target="{target}" in t.question,
                   probe_trainable=t.classification and bool(t.train_file),
                   eval_items=len(eval_items(t)))


@router.get("", response_model=list[TaskOut])
def list_tasks() -> list[TaskOut]:
    return [task_out(t) for t in TEMPLATES.values()]


@router.get("/{name}", response_model=TaskOut)
def get_task(name: str) -> TaskOut:
    return task_out(get_template(name))


@router.post("/{name}", response_model=TaskRunOut)
def run(name: str, body: TaskRunRequest, services: ServicesDep, request: Request) -> TaskRunOut:
    template = get_template(name)
    if body.classifier is not None:
        return _probe(template, body, services)
    context, sources = body.context or "", []
    if body.collection is not None:
        key = getattr(request.state, "api_key", None)
        if key is not None and not key.allows("read", body.collection):
            raise Forbidden(f"key {key.name!r} may not read collection {body.collection!r}")
        hits = services.search(body.collection, body.text, body.k)
        context = "\n\n".join(h.text.strip() for h in hits)
        sources = [h.source for h in hits]
    item = TaskInput(body.text, context, tuple(body.choices or ()), body.target or "")
    template.check(item, body.mode)  # a bad input is refused before the model loads
    adapter = services.serving.adapter_for(body.adapter or "base")
    result = run_task(template, services.serving.generator_for(adapter), item, body.mode, adapter,
                      body.max_new_tokens)
    return TaskRunOut(task=result.task, mode=result.mode, output=result.output, reply=result.reply,
                      seconds=result.seconds, sources=sources)


def _probe(template: TaskTemplate, body: TaskRunRequest, services: ServicesDep) -> TaskRunOut:
    if not template.classification:
        raise TaskInputError(f"task {template.name!r} is not a classification: a classifier "
                             "cannot answer it")
    started = time.perf_counter()
    probe = services.classifiers.load(body.classifier or "", services.embedder)
    label = probe.predict([body.text], services.embedder)[0]["label"]
    return TaskRunOut(task=template.name, mode="linear_probe", output=label, reply=label,
                      seconds=round(time.perf_counter() - started, 3))
