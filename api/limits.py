"""Request bodies within bounds: a size cap per request, enforced while the body arrives, and a
timeout for a body that stalls.

A body announced (Content-Length) over RAGTUNE_MAX_REQUEST_MB is refused with 413 before a byte of
it is read; a chunked one is counted as it arrives and refused once it passes the cap. A body that
sends nothing for RAGTUNE_BODY_TIMEOUT_S seconds gets 408. Either way the route never sees the
rest, and what it spooled is cleaned up by the route's own error path. The timeout ends with the
body: a receive after it waits for the client's disconnect, which a streamed reply (tokens, job
logs) listens for as long as it runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .asgi import ASGIApp, Receive, Scope, Send, headers_of, json_reply

CLOSE = [(b"connection", b"close")]  # the rest of the body is not read: end the connection


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = headers_of(scope)
        declared = headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            await json_reply(send, 413, "too_large", self._too_large(int(declared)), CLOSE)
            return
        problem: list[tuple[int, str, str]] = []
        started = False
        seen = 0
        body_done = False

        async def bounded_receive() -> dict[str, Any]:
            nonlocal seen, body_done
            if problem:
                return {"type": "http.disconnect"}
            if body_done:  # what comes now is the disconnect, which may take as long as the reply
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout=self.timeout_s)
            except TimeoutError:
                problem.append((408, "timeout", f"the request body stalled for {self.timeout_s:g} s "
                                                "(RAGTUNE_BODY_TIMEOUT_S)"))
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    problem.append((413, "too_large", self._too_large(seen, so_far=True)))
                    return {"type": "http.disconnect"}
                body_done = not message.get("more_body", False)
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if problem:
                return  # the route's answer to a body it never got is replaced below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if not problem:
                raise
        if problem and not started:
            await json_reply(send, *problem[0], CLOSE)

    def _too_large(self, size: int, so_far: bool = False) -> str:
        mb = self.max_bytes / (1024 * 1024)
        return (f"the request body ({size:,} bytes{' so far' if so_far else ''}) is over the "
                f"{mb:g} MB limit per request (RAGTUNE_MAX_REQUEST_MB); send fewer or smaller "
                "files per request")
