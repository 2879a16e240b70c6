"""A typed Python client for a running ragtune server's HTTP API, sync (and async for search): the
calls the CLI and the LangChain retriever make (health, collections, upload and ingest jobs, search,
ask as JSON or a stream, tuning jobs).

Replies are parsed into the same response models the server answers with (api/schemas.py); an
error reply raises `RagtuneError` with its status and the server's `error` and `detail`.

    with RagtuneClient("http://127.0.0.1:8000", api_key="rt_...") as client:
        for hit in client.search("handbook", "how do I reset the pump?", k=3):
            print(hit.score, hit.source, hit.text)
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx

from .schemas import (
    AskResponse,
    CollectionOut,
    EvalOut,
    HitOut,
    JobOut,
    SearchResponse,
    TuningJobOut,
)

SearchMode = Literal["hybrid", "dense", "keyword"]


class RagtuneError(Exception):
    """An error reply from the server: `status`, and its body's `error` and `detail`."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


class RagtuneClient:
    """`base_url` is the server's root (http://127.0.0.1:8000); `api_key` is sent as a Bearer
    token when given. The sync calls share one connection pool (close() it, or use `with`); each
    async call opens its own, so it works from any event loop."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.api_key = api_key
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> RagtuneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def healthy(self, timeout: float = 0.3) -> bool:
        """Whether a ragtune server answers /healthz within `timeout` seconds."""
        try:
            reply = self._http.get("/healthz", timeout=timeout)
        except httpx.HTTPError:
            return False
        return reply.is_success and _json(reply).get("status") == "ok"

    def collection(self, name: str) -> CollectionOut:
        return CollectionOut.model_validate(_ok(self._http.get(_coll(name))))

    def create_collection(self, name: str, chunk_size: int | None = None,
                          chunk_overlap: int | None = None,
                          index: str | None = None) -> CollectionOut:
        body = {"name": name, "chunk_size": chunk_size, "chunk_overlap": chunk_overlap,
                "index": index}
        reply = self._http.post("/v1/collections",
                                json={k: v for k, v in body.items() if v is not None})
        return CollectionOut.model_validate(_ok(reply))

    def upload(self, collection: str, files: list[tuple[str, Path]],
               metadata: Mapping[str, Any] | None = None) -> JobOut:
        """Upload (name, path) pairs in one request: a background ingest job (`ingest_job`)."""
        handles = [(name, path.open("rb")) for name, path in files]
        try:
            reply = self._http.post(
                _coll(collection) + "/documents",
                files=[("files", (name, handle)) for name, handle in handles],
                data={"metadata": json.dumps(dict(metadata))} if metadata else None,
                timeout=max(self.timeout, 600.0))
        finally:
            for _, handle in handles:
                handle.close()
        return JobOut.model_validate(_ok(reply))

    def ingest_job(self, job_id: str) -> JobOut:
        return JobOut.model_validate(_ok(self._http.get(f"/v1/ingest-jobs/{quote(job_id)}")))

    def ask(self, collection: str, question: str, **options: Any) -> AskResponse:
        """A grounded answer; `options` are the ask route's fields (k, mode, max_new_tokens, ...)."""
        reply = self._http.post(_coll(collection) + "/ask", json=_ask_body(question, options),
                                timeout=max(self.timeout, 600.0))
        return AskResponse.model_validate(_ok(reply))

    def ask_stream(self, collection: str, question: str,
                   **options: Any) -> Iterator[str | AskResponse]:
        """The answer's tokens as they come, then the final answer."""
        body = {**_ask_body(question, options), "stream": True}
        with self._http.stream("POST", _coll(collection) + "/ask", json=body,
                               timeout=max(self.timeout, 600.0)) as reply:
            if not reply.is_success:
                reply.read()
                _raise_for_error(reply)
            event = ""
            for line in reply.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[5:])
                    if event == "token":
                        yield str(data["text"])
                    elif event == "done":
                        yield AskResponse.model_validate(data)
                    elif event == "error":
                        raise RagtuneError(500, str(data.get("error")), str(data.get("detail")))

    def tuning_jobs(self) -> list[TuningJobOut]:
        return [TuningJobOut.model_validate(j) for j in _ok(self._http.get("/v1/tuning/jobs"))]

    def tuning_job(self, job_id: str) -> TuningJobOut:
        return TuningJobOut.model_validate(_ok(self._http.get(f"/v1/tuning/jobs/{quote(job_id)}")))

    def cancel_tuning_job(self, job_id: str) -> TuningJobOut:
        reply = self._http.post(f"/v1/tuning/jobs/{quote(job_id)}/cancel")
        return TuningJobOut.model_validate(_ok(reply))

    def resume_tuning_job(self, job_id: str) -> TuningJobOut:
        reply = self._http.post(f"/v1/tuning/jobs/{quote(job_id)}/resume")
        return TuningJobOut.model_validate(_ok(reply))

    def start_tuning_job(self, job: Mapping[str, Any],
                         files: Mapping[str, Path] | None = None) -> TuningJobOut:
        """Queue a fine-tuning job: `job` is the API's JobCreate; `files` uploads datasets with it
        (fields `file`, `valid_file`, `questions_file`), each checked in full by the server."""
        if not files:
            return TuningJobOut.model_validate(_ok(self._http.post(
                "/v1/tuning/jobs", json=dict(job), timeout=max(self.timeout, 600.0))))
        handles = {field: (path.name, path.open("rb")) for field, path in files.items()}
        try:
            reply = self._http.post("/v1/tuning/jobs", files=handles,
                                    data={"config": json.dumps(dict(job))},
                                    timeout=max(self.timeout, 600.0))
        finally:
            for _, handle in handles.values():
                handle.close()
        return TuningJobOut.model_validate(_ok(reply))

    def start_eval(self, collection: str, questions: list[dict[str, Any]], k: int = 5,
                   mode: str = "zero_shot") -> EvalOut:
        """Run a golden set (kb_dev format) on the server in the background: poll `eval_run`."""
        reply = self._http.post(_coll(collection) + "/evals",
                                json={"questions": questions, "k": k, "mode": mode})
        return EvalOut.model_validate(_ok(reply))

    def eval_run(self, eval_id: str) -> EvalOut:
        """An evaluation, with each question's result."""
        return EvalOut.model_validate(_ok(self._http.get(f"/v1/evals/{quote(eval_id)}")))

    def search(self, collection: str, query: str, k: int = 5, mode: SearchMode | None = None,
               filter: Mapping[str, Any] | None = None,
               rerank: bool | None = None) -> list[HitOut]:
        """The top `k` chunks of `collection` for `query`. `filter` is the API's: {"source": ...,
        "doc_id": ..., "metadata": {"key": value}}; `mode` and `rerank` default to the server's."""
        reply = self._http.post(_search_path(collection),
                                json=_search_body(query, k, mode, filter, rerank))
        return _hits(reply)

    async def asearch(self, collection: str, query: str, k: int = 5,
                      mode: SearchMode | None = None,
                      filter: Mapping[str, Any] | None = None,
                      rerank: bool | None = None) -> list[HitOut]:
        """`search`, awaited."""
        async with httpx.AsyncClient(base_url=self.base_url, headers=self._headers,
                                     timeout=self.timeout) as http:
            reply = await http.post(_search_path(collection),
                                    json=_search_body(query, k, mode, filter, rerank))
        return _hits(reply)


def _coll(collection: str) -> str:
    return f"/v1/collections/{quote(collection, safe='')}"


def _search_path(collection: str) -> str:
    return _coll(collection) + "/search"


def _ask_body(question: str, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"question": question, **{k: v for k, v in options.items() if v is not None}}


def _ok(reply: httpx.Response) -> Any:
    _raise_for_error(reply)
    return reply.json()


def _json(reply: httpx.Response) -> dict[str, Any]:
    try:
        body = reply.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _search_body(query: str, k: int, mode: str | None, flt: Mapping[str, Any] | None,
                 rerank: bool | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"query": query, "k": k}
    if mode is not None:
        body["mode"] = mode
    if rerank is not None:
        body["rerank"] = rerank
    if flt is not None:
        body["filter"] = dict(flt)
    return body


def _hits(reply: httpx.Response) -> list[HitOut]:
    _raise_for_error(reply)
    return SearchResponse.model_validate(reply.json()).hits


def _raise_for_error(reply: httpx.Response) -> None:
    if reply.is_success:
        return
    try:
        body = reply.json()
        error, detail = str(body.get("error", "error")), str(body.get("detail", reply.text))
    except (ValueError, AttributeError):
        error, detail = "error", reply.text or reply.reason_phrase
    raise RagtuneError(reply.status_code, error, detail)
