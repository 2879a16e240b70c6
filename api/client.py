"""A typed Python client for a running ragtune server's HTTP API (search, for now), sync and async.

Replies are parsed into the same response models the server answers with (api/schemas.py); an
error reply raises `RagtuneError` with its status and the server's `error` and `detail`.

    with RagtuneClient("http://127.0.0.1:8000", api_key="rt_...") as client:
        for hit in client.search("handbook", "how do I reset the pump?", k=3):
            print(hit.score, hit.source, hit.text)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx

from .schemas import HitOut, SearchResponse

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
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> RagtuneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def search(self, collection: str, query: str, k: int = 5, mode: SearchMode | None = None,
               filter: Mapping[str, Any] | None = None) -> list[HitOut]:
        """The top `k` chunks of `collection` for `query`. `filter` is the API's: {"source": ...,
        "doc_id": ..., "metadata": {"key": value}}; `mode` defaults to the server's."""
        reply = self._http.post(_search_path(collection), json=_search_body(query, k, mode, filter))
        return _hits(reply)

    async def asearch(self, collection: str, query: str, k: int = 5,
                      mode: SearchMode | None = None,
                      filter: Mapping[str, Any] | None = None) -> list[HitOut]:
        """`search`, awaited."""
        async with httpx.AsyncClient(base_url=self.base_url, headers=self._headers,
                                     timeout=self.timeout) as http:
            reply = await http.post(_search_path(collection),
                                    json=_search_body(query, k, mode, filter))
        return _hits(reply)


def _search_path(collection: str) -> str:
    return f"/v1/collections/{quote(collection, safe='')}/search"


def _search_body(query: str, k: int, mode: str | None,
                 flt: Mapping[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"query": query, "k": k}
    if mode is not None:
        body["mode"] = mode
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
