"""/v1/collections/{name}/evals and /v1/evals: answer evaluations on a golden set, stored."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from generation.eval_runs import EvalRun
from generation.evaluation import parse_question

from ..deps import ServicesDep
from ..errors import NotFound
from ..schemas import EvalOut, Strict

router = APIRouter(tags=["evals"])


class EvalRequest(Strict):
    questions: list[dict[str, Any]] = Field(
        ..., min_length=1, max_length=5000,
        description="golden set in the kb_dev format: question, answers, match, answerable, doc")
    k: int = Field(5, ge=1, le=100)
    mode: str = Field("zero_shot", pattern="^(zero_shot|cot)$")


def eval_out(run: EvalRun, with_results: bool = False) -> EvalOut:
    return EvalOut(eval_id=run.id, collection=run.collection, state=run.state,
                   questions=run.questions, config=run.config, summary=run.summary,
                   error=run.error, created_at=run.created_at, finished_at=run.finished_at,
                   results=run.results if with_results else None)


@router.post("/v1/collections/{name}/evals", status_code=202, response_model=EvalOut)
def start_eval(name: str, body: EvalRequest, services: ServicesDep) -> EvalOut:
    services.collection(name)
    gold = [parse_question(q, f"questions[{i}]") for i, q in enumerate(body.questions)]
    config = services.ask_config(k=body.k, mode=body.mode)
    run = services.evals.start(name, gold, {"k": body.k, "mode": body.mode},
                               lambda q: services.ask(name, q, config))
    return eval_out(run)


@router.get("/v1/evals", response_model=list[EvalOut])
def list_evals(services: ServicesDep) -> list[EvalOut]:
    return [eval_out(r) for r in services.evals.all()]


@router.get("/v1/evals/{eval_id}", response_model=EvalOut)
def get_eval(eval_id: str, services: ServicesDep) -> EvalOut:
    run = services.evals.get(eval_id)
    if run is None:
        raise NotFound(f"evaluation {eval_id!r} not found")
    return eval_out(run, with_results=True)
