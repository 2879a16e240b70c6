"""Every request observed once, at the outermost edge: its id, its access log line, its timing.

The id is the caller's `X-Request-ID` when it is a sane token (letters, digits and `._:/+=@-`, at
most 128 characters), else a new one; it is echoed in the `X-Request-ID` header of every reply,
the guard's and key check's early refusals included, and set in `api.logs.request_id` so every
log line written for the request carries it. The access line (logger `ragtune.access`) gives
method, path, route template, status and duration; health checks and scrapes are logged at
DEBUG, since they come every few seconds.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from starlette.routing import BaseRoute, Match

from .asgi import ASGIApp, Receive, Scope, Send, headers_of
from .logs import request_id

ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}\Z")
HEADER = b"x-request-id"
QUIET = frozenset({"/healthz", "/metrics"})
UNMATCHED = "unmatched"  # the route label of a path no route serves (404s), bounded like the rest

access = logging.getLogger("ragtune.access")

RequestObserver = Callable[[str, str, int, float], None]  # method, route template, status, seconds


def incoming_id(value: str | None) -> str:
    """The caller's request id if it is safe to log and echo, else a new one."""
    if value and ID.match(value):
        return value
    return uuid.uuid4().hex


def route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The template of the route serving the request: the one the router chose, or for a request
    refused before routing (guard, keys, body limits) the one it would have chosen."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    partial = UNMATCHED  # a path served, but not for this method (405)
    for route in routes:
        path = getattr(route, "path", None)
        if not isinstance(path, str):  # an included router: its routes are in the list too
            continue
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return path
        if match is Match.PARTIAL and partial == UNMATCHED:
            partial = path
    return partial


class RequestTelemetry:
    """ASGI middleware; the outermost one, so that it sees every reply. `routes` is the app's
    route list (read when a request was refused before routing); `observe` receives each
    request's method, route template, status and seconds (metrics)."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute],
                 observe: RequestObserver | None = None) -> None:
        self.app = app
        self.routes = routes
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_id(headers_of(scope).get("x-request-id"))
        # Left set when this returns: an unexpected error's 500 is answered (and logged) by
        # Starlette's outer error middleware after it, and reads the id from here. Each request
        # runs in its own task, so the value ends with it.
        request_id.set(rid)
        status, started = 500, time.perf_counter()  # 500: raised before a reply began

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._done(scope, status, time.perf_counter() - started)

    def _done(self, scope: Scope, status: int, seconds: float) -> None:
        method, path = scope["method"], scope["path"]
        route = route_template(scope, self.routes)
        if self.observe is not None:
            self.observe(method, route, status, seconds)
        client = scope.get("client")
        access.log(logging.DEBUG if path in QUIET else logging.INFO,
                   "%s %s %d %.1f ms", method, path, status, seconds * 1000,
                   extra={"method": method, "path": path, "route": route, "status": status,
                          "duration_ms": round(seconds * 1000, 1),
                          "client": client[0] if client else None})
