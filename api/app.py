"""The FastAPI application: routers, error handlers, start-up and shut-down of services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse

from . import errors
from .routers import (
    adapters,
    ask,
    classifiers,
    collections,
    documents,
    evals,
    jobs,
    openai_compat,
    search,
    tuning,
)
from .services import Services
from .settings import Settings

STATIC = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or Services(settings or Settings())
        app.state.services = svc
        svc.recover()
        svc.ingest_worker.start()
        svc.start_tuning_runner()
        try:
            yield
        finally:
            svc.close()

    app = FastAPI(title="ragtune", version="0.1.0", lifespan=lifespan,
                  description="Grounded answers with citations from your documents.")
    errors.install(app)
    for module in (collections, documents, jobs, search, ask, openai_compat, evals, tuning, classifiers,
                   adapters):
        app.include_router(module.router)
    app.include_router(jobs.legacy)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
