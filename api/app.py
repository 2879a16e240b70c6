"""The FastAPI application: routers, error handlers, start-up and shut-down of services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse

from . import errors
from .auth import AuthGuard
from .guard import BrowserGuard
from .keys import KeyStore
from .limits import BodyLimit
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
    policy = settings or (services.settings if services is not None else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or Services(policy)
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
    # the last added runs first: Host/Origin guard, CORS (so preflights need no key), keys, body
    app.add_middleware(BodyLimit, max_bytes=policy.max_request_bytes,
                       timeout_s=policy.body_timeout_s)
    app.add_middleware(AuthGuard, store=KeyStore.in_data_dir(policy.data_dir),
                       audit=policy.data_dir / "audit.log", per_minute=policy.rate_limit_per_minute)
    if policy.guard_origins:
        app.add_middleware(CORSMiddleware, allow_origins=sorted(policy.guard_origins),
                           allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(BrowserGuard, hosts=policy.guard_hosts, origins=policy.guard_origins)
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
