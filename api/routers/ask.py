"""/v1/collections/{name}/ask: a grounded answer with citations, as JSON or Server-Sent Events."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from generation.batching import client_gone
from generation.grounding import Example
from generation.rag import Answer
from guardrails.policy import Screening
from guardrails.screen import Verdict
from retrieval.types import SearchFilter

from .. import sse
from ..deps import ClientGoneDep, ServicesDep
from ..schemas import AskRequest, AskResponse, CitationOut, ScreeningOut, VerdictOut

router = APIRouter(prefix="/v1/collections/{name}", tags=["ask"])


def verdict_out(verdict: Verdict | None) -> VerdictOut | None:
    if verdict is None:
        return None
    return VerdictOut(flagged=verdict.flagged, score=verdict.score, terms=list(verdict.terms))


def screening_out(screening: Screening | None) -> ScreeningOut | None:
    if screening is None:
        return None
    return ScreeningOut(action=screening.action, screen=screening.screen,
                        flagged=screening.flagged, changed=screening.changed,
                        question=verdict_out(screening.question),
                        answer=verdict_out(screening.answer))


def answer_out(answer: Answer, screening: Screening | None = None) -> AskResponse:
    return AskResponse(
        answer=answer.answer, refused=answer.refused, grounded=answer.grounded,
        support_score=answer.support_score, answerable_score=answer.answerable_score,
        refusal_reason=answer.refusal_reason,
        passages=len(answer.passages), adapter=answer.adapter,
        citations=[CitationOut(n=c.n, doc_id=c.doc_id, source=c.source, page=c.page,
                               chunk_id=c.chunk_id, text=c.text) for c in answer.citations],
        screening=screening_out(screening))


def _filter(body: AskRequest) -> SearchFilter | None:
    if body.filter is None:
        return None
    return SearchFilter(source=body.filter.source, doc_id=body.filter.doc_id,
                        metadata=dict(body.filter.metadata))


class _Held:
    """The final Answer and the screen's verdict on it, kept from an answer stream."""

    def __init__(self) -> None:
        self.answer: Answer | None = None
        self.screening: Screening | None = None

    def keep(self, item: str | Answer | Screening) -> str | None:
        """Keeps an Answer or a Screening; gives back a text piece."""
        if isinstance(item, Answer):
            self.answer = item
        elif isinstance(item, Screening):
            self.screening = item
        else:
            return item
        return None


@router.post("/ask", response_model=AskResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "JSON, or SSE `token` events then one `done` event "
                                             "when `stream` is true"}})
def ask(name: str, body: AskRequest, services: ServicesDep,
        gone: ClientGoneDep) -> AskResponse | StreamingResponse:
    client_gone.set(gone)  # this worker thread's context: a client that leaves stops its answer
    config = services.ask_config(
        k=body.k, max_new_tokens=body.max_new_tokens, temperature=body.temperature,
        mode=body.mode, examples=tuple(Example(e.question, e.answer) for e in body.examples),
        adapter=body.adapter, answer_style=body.answer_style, strict=body.strict)
    items = services.screened_ask(name, body.question, config, _filter(body), body.rerank)
    if not body.stream:
        held = _Held()
        for item in items:
            held.keep(item)
        if held.answer is None:
            raise RuntimeError("the answer stream ended without its Answer")
        return answer_out(held.answer, held.screening)

    def events(items: Iterator[str | Answer | Screening]) -> Iterator[str]:
        # the Screening, when the screen is on, comes right after the Answer: hold the Answer
        held = _Held()
        for item in items:
            text = held.keep(item)
            if text is not None:
                yield sse.event("token", {"text": text})
        if held.answer is not None:
            yield sse.event("done", answer_out(held.answer, held.screening).model_dump())

    return sse.stream(events(sse.primed(items)),
                      lambda exc: sse.event("error", {"error": "generation_failed",
                                                      "detail": str(exc)}), gone)
