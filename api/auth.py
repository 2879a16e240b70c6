"""Who may do what: API keys checked on every request once any key is in force.

`needs(method, path)` says which scope a request needs (read < write < admin) and on which
collection; the middleware finds the key (`Authorization: Bearer KEY`, so the OpenAI SDK's `api_key`
works, or `X-API-Key: KEY`) and answers 401 without a valid key, 403 outside its scope, 429 past its
rate. State-changing requests are written to `DATA_DIR/audit.log` (one JSON line each: time, key,
method, path, status).

Without any key in force (the `make run` default, on loopback) the API is open and unlogged; a
server bound beyond loopback refuses to start without one (`ragtune serve`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .asgi import ASGIApp, Receive, Scope, Send, headers_of, json_reply
from .keys import ApiKey, KeyStore

PUBLIC = re.compile(
    r"/(healthz|docs|redoc|openapi\.json|favicon\.ico|(docs-assets|static)/[\w.-]+)?\Z")
_COLLECTION = re.compile(r"/v1/collections/([^/]+)(/.*)?\Z")
READ_POSTS = frozenset({"/v1/chat/completions", "/v1/embeddings"})
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def needs(method: str, path: str) -> tuple[str, str | None] | None:
    """(scope, collection) a request needs; None for a public one (health, the page, the schema)."""
    method = method.upper()
    if PUBLIC.match(path):
        return None
    match = _COLLECTION.match(path)
    if match:
        name, rest = match.group(1), match.group(2) or ""
        if method in SAFE or rest in ("/search", "/ask"):
            return "read", name
        return "write", name
    if path == "/v1/collections":
        return ("read", None) if method in SAFE else ("write", "")  # "": only an unrestricted key
    if path.startswith(("/v1/tuning", "/v1/keys")):
        return "admin", None
    if path == "/metrics":  # counts and states, no content: any key may scrape
        return "read", None
    if path.startswith(("/v1/adapters", "/v1/classifiers")):
        reading = method in SAFE or path.endswith("/predict")
        return ("read", None) if reading else ("admin", None)
    if path.startswith("/v1/tasks"):  # a task run reads the collection it names: checked there
        return "read", None
    if path.startswith(("/v1/ingest-jobs", "/v1/jobs", "/v1/evals", "/v1/models")) \
            or path in READ_POSTS:
        return ("read", None) if method in SAFE or path in READ_POSTS else ("write", None)
    return "admin", None  # anything not named above: the most trusted only


def presented_key(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key") or None


class RateLimiter:
    """At most `per_minute` requests per key in any 60-second window (a sliding log)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key_id: str, now: float | None = None) -> int:
        """0 when the request may go now, else the seconds to wait."""
        if self.per_minute <= 0:
            return 0
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for t in self._seen.get(key_id, []) if now - t < 60.0]
            if len(recent) >= self.per_minute:
                self._seen[key_id] = recent
                return max(1, int(60.0 - (now - recent[0])) + 1)
            recent.append(now)
            self._seen[key_id] = recent
            return 0


class AuthGuard:
    """ASGI middleware: keys, scopes, rate limits and the audit log (only while keys are in force)."""

    def __init__(self, app: ASGIApp, store: KeyStore, audit: Path, per_minute: int = 0) -> None:
        self.app = app
        self.store = store
        self.audit = audit
        self.limiter = RateLimiter(per_minute)
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.store.active():
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        need = needs(method, path)
        if need is None:
            await self.app(scope, receive, send)
            return
        presented = presented_key(headers_of(scope))
        key = self.store.check(presented) if presented else None
        if key is None:
            said = "no API key" if not presented else "an invalid or revoked API key"
            await json_reply(send, 401, "unauthorized",
                         f"{said}: send `Authorization: Bearer KEY` or `X-API-Key: KEY` "
                         "(`ragtune keys create`)", [(b"www-authenticate", b"Bearer")])
            return
        scope_needed, collection = need
        allowed = key.allows(scope_needed, collection) and not (
            collection == "" and key.collections is not None)
        if not allowed:
            where = f" on collection {collection!r}" if collection else ""
            await json_reply(send, 403, "forbidden",
                         f"key {key.name!r} ({key.scope}) may not {method} {path}: it needs "
                         f"{scope_needed}{where}")
            return
        wait = self.limiter.retry_after(key.id)
        if wait:
            await json_reply(send, 429, "rate_limited",
                         f"key {key.name!r} is over {self.limiter.per_minute} requests a minute; "
                         f"retry in {wait} s", [(b"retry-after", str(wait).encode())])
            return
        scope.setdefault("state", {})["api_key"] = key
        status = [0]

        async def recording(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        await self.app(scope, receive, recording)
        if method not in SAFE:
            self._log(key, method, path, status[0])

    def _log(self, key: ApiKey, method: str, path: str, status: int) -> None:
        line = json.dumps({"at": datetime.now(UTC).isoformat(), "key": key.name, "key_id": key.id,
                           "method": method, "path": path, "status": status})
        with self._lock, self.audit.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
