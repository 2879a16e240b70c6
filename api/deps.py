"""FastAPI dependencies: the Services object, injected so tests can swap it, and an event that
says the client has left."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from .services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

DISCONNECT_POLL_S = 0.25


async def watch_client(request: Request) -> AsyncIterator[threading.Event]:
    """An event set once the client disconnects, watched while the route runs. A route that
    generates runs under it (`generation.batching.client_gone`), so a client that leaves frees
    its place in the generation queue or batch at once instead of when its answer would end."""
    gone = threading.Event()

    async def watch() -> None:
        while not gone.is_set():
            if await request.is_disconnected():
                gone.set()
                return
            await asyncio.sleep(DISCONNECT_POLL_S)

    task = asyncio.create_task(watch())
    try:
        yield gone
    finally:
        task.cancel()


ClientGoneDep = Annotated[threading.Event, Depends(watch_client)]
