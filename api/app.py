"""The FastAPI application: routers, error handlers, start-up and shut-down of services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from . import errors
from .routers import collections, documents, jobs, search
from .services import Services
from .settings import Settings


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or Services(settings or Settings())
        app.state.services = svc
        svc.ingest_worker.start()
        try:
            yield
        finally:
            svc.close()

    app = FastAPI(title="ragtune", version="0.1.0", lifespan=lifespan,
                  description="Grounded answers with citations from your documents.")
    errors.install(app)
    for module in (collections, documents, jobs, search):
        app.include_router(module.router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
