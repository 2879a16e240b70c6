"""OpenAI-compatible endpoints: /v1/chat/completions, /v1/embeddings, /v1/models.

`model` in a chat request names either a collection (answered with retrieval and citations, the
last user message being the question) or the generator itself (plain chat). An extra `adapter`
field picks the adapter ("base" for none; default: the active one), and `strict` refuses an
ungrounded answer; the adapter that answered and the offensive-text screen's verdicts (see
guardrails/) are reported in the extra `ragtune` field, which plain chat with the base model and
no screen leaves out.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from generation.batching import client_gone
from generation.generator import SamplingConfig
from generation.rag import Answer
from guardrails.policy import Screening

from .. import sse
from ..deps import ClientGoneDep, ServicesDep
from ..errors import BadRequest, Forbidden, NotFound
from ..services import Services
from .ask import answer_out, screening_out

router = APIRouter(prefix="/v1", tags=["openai"])


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    adapter: str | None = Field(None, max_length=64, description="ragtune extension: adapter to "
                                "answer with; \"base\" for none; default: the active adapter")
    strict: bool | None = Field(None, description="ragtune extension, for a collection: refuse an "
                                "answer that is not grounded; default: RAGTUNE_REFUSE_UNGROUNDED")


class EmbeddingRequest(BaseModel):
    model: str
    input: str | list[str]


def _chunk(cid: str, model: str, delta: dict[str, str], finish: str | None,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return {**body, **({"ragtune": extra} if extra else {})}


def _completion(cid: str, model: str, text: str, usage: dict[str, int],
                extra: dict[str, Any] | None) -> dict[str, Any]:
    body = {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": usage}
    return {**body, **({"ragtune": extra} if extra else {})}


Piece = str | Answer | Screening


def _pieces(services: Services, body: ChatRequest) -> tuple[Iterator[Piece], str | None]:
    """The answer's pieces, and the adapter answering (None: the base model)."""
    max_new = body.max_completion_tokens or body.max_tokens or services.settings.max_new_tokens
    if services.catalog.exists(body.model):
        question = next((m.content for m in reversed(body.messages) if m.role == "user"), None)
        if not question:
            raise BadRequest("a chat request to a collection needs a user message (the question)")
        config = services.ask_config(max_new_tokens=max_new, temperature=body.temperature,
                                     adapter=body.adapter, strict=body.strict)
        return services.screened_ask(body.model, question, config), config.adapter
    if body.model != services.settings.generator:
        raise NotFound(f"model {body.model!r} is neither a collection nor the generator "
                       f"({services.settings.generator!r}); GET /v1/models lists them")
    sampling = SamplingConfig(max_new_tokens=max_new, temperature=body.temperature,
                              top_p=body.top_p)
    messages = [m.model_dump() for m in body.messages]
    adapter = services.serving.adapter_for(body.adapter)
    return services.screened_chat(messages, sampling, adapter), adapter


def _extra(answer: Answer | None, adapter: str | None,
           screening: Screening | None) -> dict[str, Any] | None:
    if answer is not None:
        return answer_out(answer, screening).model_dump()
    out: dict[str, Any] = {"adapter": adapter} if adapter is not None else {}
    shown = screening_out(screening)
    if shown is not None:
        out["screening"] = shown.model_dump()
    return out or None


@router.post("/chat/completions", response_model=None)
def chat_completions(body: ChatRequest, services: ServicesDep, request: Request,
                     gone: ClientGoneDep) -> dict[str, Any] | StreamingResponse:
    client_gone.set(gone)  # this worker thread's context: a client that leaves stops its answer
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    key = getattr(request.state, "api_key", None)  # set by api/auth.py while keys are in force
    if key is not None and services.catalog.exists(body.model) and not key.allows("read", body.model):
        raise Forbidden(f"key {key.name!r} may not read collection {body.model!r}")
    items, adapter = _pieces(services, body)
    if not body.stream:
        text, answer, screening = "", None, None
        for item in items:
            if isinstance(item, Answer):
                text, answer = item.answer, item
            elif isinstance(item, Screening):
                screening = item
            else:
                text += item
        return _completion(cid, body.model, text, _usage(services, body, text),
                           _extra(answer, adapter, screening))

    def events(items: Iterator[Piece]) -> Iterator[str]:
        yield sse.event(None, _chunk(cid, body.model, {"role": "assistant", "content": ""}, None))
        answer, screening = None, None
        for item in items:
            if isinstance(item, Answer):
                answer = item
            elif isinstance(item, Screening):
                screening = item
            else:
                yield sse.event(None, _chunk(cid, body.model, {"content": item}, None))
        yield sse.event(None, _chunk(cid, body.model, {}, "stop",
                                     _extra(answer, adapter, screening)))
        yield sse.event(None, "[DONE]")

    return sse.stream(events(sse.primed(items)), lambda exc: sse.event(
        None, {"error": {"message": str(exc), "type": "generation_failed"}}), gone)


def _usage(services: Services, body: ChatRequest, text: str) -> dict[str, int]:
    if not services.serving.loaded:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    gen = services.serving.generator
    prompt = gen.prompt_tokens([m.model_dump() for m in body.messages])
    completion = gen.count_tokens(text)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


@router.post("/embeddings")
def embeddings(body: EmbeddingRequest, services: ServicesDep) -> dict[str, Any]:
    emb = services.embedder
    if body.model not in (emb.name, services.settings.embedder):
        raise NotFound(f"embedding model {body.model!r} is not served; use {emb.name!r}")
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > 2048 or any(not t for t in texts):
        raise BadRequest("input must be 1 to 2048 non-empty strings")
    vectors = emb.embed_batch(texts)
    tokens = sum(emb.count_tokens(t) for t in texts)
    return {"object": "list", "model": emb.name,
            "data": [{"object": "embedding", "index": i, "embedding": v.tolist()}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@router.get("/models")
def models(services: ServicesDep) -> dict[str, Any]:
    now = int(time.time())
    ids = [services.settings.generator, services.settings.embedder, *services.catalog.names()]
    return {"object": "list",
            "data": [{"id": i, "object": "model", "created": now, "owned_by": "ragtune"}
                     for i in ids]}
