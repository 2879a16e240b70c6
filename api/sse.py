"""Server-Sent Events helpers: one event per chunk, errors after the stream began as an event, and
a comment line (HEARTBEAT) that long quiet streams send so a client that left is noticed."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import chain
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool

T = TypeVar("T")
HEARTBEAT = ": keep-alive\n\n"
"""An SSE comment: clients ignore it; writing it fails once the client is gone, and it keeps
proxies from closing a quiet stream."""


def event(name: str | None, data: Any) -> str:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {payload}\n\n"


def primed(items: Iterator[T]) -> Iterator[T]:
    """Run `items` up to its first element now, so errors raised before anything is sent still
    become a normal HTTP error response."""
    try:
        first = next(items)
    except StopIteration:
        return iter(())
    return chain([first], items)


def _guarded(events: Iterator[str], on_error: Callable[[Exception], str]) -> Iterator[str]:
    try:
        yield from events
    except Exception as exc:  # noqa: BLE001 - the status line is already sent
        yield on_error(exc)


async def _guarded_async(events: AsyncIterator[str],
                         on_error: Callable[[Exception], str]) -> AsyncIterator[str]:
    try:
        async for item in events:
            yield item
    except Exception as exc:  # noqa: BLE001 - the status line is already sent
        yield on_error(exc)


async def _until_gone(events: AsyncIterator[str], gone: threading.Event) -> AsyncIterator[str]:
    try:
        async for item in events:
            yield item
    finally:  # ended, or cancelled because the client left
        gone.set()


def stream(events: Iterator[str] | AsyncIterator[str],
           on_error: Callable[[Exception], str],
           gone: threading.Event | None = None) -> StreamingResponse:
    """`events` as a text/event-stream response. A sync iterator runs in a worker thread, one
    `next()` at a time, and nothing can stop it inside one: use it where each item comes soon
    (tokens), and give `gone` (the event its generation watches: api/deps.py) so a client that
    leaves stops the generation itself. A stream that waits on something (a job) is an async
    iterator, so a client that leaves cancels it at its next await."""
    body = (_guarded_async(events, on_error) if isinstance(events, AsyncIterator)
            else _guarded(events, on_error))
    if gone is not None:
        body = _until_gone(body if isinstance(body, AsyncIterator) else iterate_in_threadpool(body),
                           gone)
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
