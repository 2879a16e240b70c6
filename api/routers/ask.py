"""/v1/collections/{name}/ask: a grounded answer with citations, as JSON or Server-Sent Events."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from generation.grounding import Example
from generation.rag import Answer
from retrieval.types import SearchFilter

from .. import sse
from ..deps import ServicesDep
from ..schemas import AskRequest, AskResponse, CitationOut

router = APIRouter(prefix="/v1/collections/{name}", tags=["ask"])


def answer_out(answer: Answer) -> AskResponse:
    return AskResponse(
        answer=answer.answer, refused=answer.refused, grounded=answer.grounded,
        support_score=answer.support_score, answerable_score=answer.answerable_score,
        refusal_reason=answer.refusal_reason,
        passages=len(answer.passages), adapter=answer.adapter,
        citations=[CitationOut(n=c.n, doc_id=c.doc_id, source=c.source, page=c.page,
                               chunk_id=c.chunk_id, text=c.text) for c in answer.citations])


def _filter(body: AskRequest) -> SearchFilter | None:
    if body.filter is None:
        return None
    return SearchFilter(source=body.filter.source, doc_id=body.filter.doc_id,
                        metadata=dict(body.filter.metadata))


@router.post("/ask", response_model=AskResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "JSON, or SSE `token` events then one `done` event "
                                             "when `stream` is true"}})
def ask(name: str, body: AskRequest, services: ServicesDep) -> AskResponse | StreamingResponse:
    config = services.ask_config(
        k=body.k, max_new_tokens=body.max_new_tokens, temperature=body.temperature,
        mode=body.mode, examples=tuple(Example(e.question, e.answer) for e in body.examples),
        adapter=body.adapter, answer_style=body.answer_style)
    items = services.ask_stream(name, body.question, config, _filter(body))
    if not body.stream:
        final = [i for i in items if isinstance(i, Answer)]
        return answer_out(final[-1])

    def events(items: Iterator[str | Answer]) -> Iterator[str]:
        for item in items:
            if isinstance(item, Answer):
                yield sse.event("done", answer_out(item).model_dump())
            else:
                yield sse.event("token", {"text": item})

    return sse.stream(events(sse.primed(items)),
                      lambda exc: sse.event("error", {"error": "generation_failed",
                                                      "detail": str(exc)}))
