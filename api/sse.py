"""Server-Sent Events helpers: one event per chunk, errors after the stream began as an event."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse

T = TypeVar("T")


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


def stream(events: Iterator[str], on_error: Callable[[Exception], str]) -> StreamingResponse:
    def guarded() -> Iterator[str]:
        try:
            yield from events
        except Exception as exc:  # noqa: BLE001 - the status line is already sent
            yield on_error(exc)

    return StreamingResponse(guarded(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
