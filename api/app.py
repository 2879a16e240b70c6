"""The FastAPI application: routers, error handlers, start-up and shut-down of services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from . import errors
from .auth import AuthGuard
from .guard import BrowserGuard
from .keys import KeyStore
from .limits import BodyLimit
from .metrics import Metrics
from .routers import (
    adapters,
    ask,
    classifiers,
    collections,
    documents,
    evals,
    guard,
    jobs,
    metrics,
    openai_compat,
    search,
    tasks,
    tuning,
)
from .services import Services
from .settings import Settings
from .telemetry import RequestTelemetry

STATIC = Path(__file__).resolve().parent / "static"
DOCS_ASSETS = "/docs-assets"


def create_app(settings: Settings | None = None, services: Services | None = None,
               writer: bool = True) -> FastAPI:
    """The API. `writer=False`: a read replica on a cluster (api/cluster.py), which neither
    recovers nor runs ingest and tuning jobs: the one writer does."""
    policy = settings or (services.settings if services is not None else Settings())
    observed = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services or Services(policy)
        app.state.services = svc
        if writer:
            svc.recover()
        observed.watch(svc)  # before the workers resume jobs: their chunks count as this run's
        if writer:
            svc.ingest_worker.start()
            svc.start_tuning_runner()
        try:
            yield
        finally:
            svc.close()

    app = FastAPI(title="ragtune", version="0.1.0", lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="Grounded answers with citations from your documents.")
    app.state.metrics = observed
    # the last added runs first: request id, log and timing (added last, below), Host/Origin guard,
    # CORS (so preflights need no key), keys, body
    app.add_middleware(BodyLimit, max_bytes=policy.max_request_bytes,
                       timeout_s=policy.body_timeout_s)
    app.add_middleware(AuthGuard, store=KeyStore.in_data_dir(policy.data_dir),
                       audit=policy.data_dir / "audit.log", per_minute=policy.rate_limit_per_minute)
    if policy.guard_origins:
        app.add_middleware(CORSMiddleware, allow_origins=sorted(policy.guard_origins),
                           allow_methods=["*"], allow_headers=["*"],
                           expose_headers=["X-Request-ID"])
    app.add_middleware(BrowserGuard, hosts=policy.guard_hosts, origins=policy.guard_origins)
    errors.install(app)
    routers = [m.router for m in (collections, documents, jobs, search, ask, openai_compat, evals,
                                  tuning, classifiers, tasks, guard, adapters, metrics)] + [jobs.legacy]
    for router in routers:
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    # the web page's scripts and styles (public like the page: they hold no data)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    # Swagger UI and ReDoc from their assets installed with ragtune, not a CDN: they work offline
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")),
              name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="ragtune API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="ragtune API",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                              with_google_fonts=False)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # outermost, so every reply (the guard's and key check's refusals too) carries the request id;
    # given every route, so a refused request is still labelled with the route it asked for
    routes = [*app.router.routes, *(route for router in routers for route in router.routes)]
    app.add_middleware(RequestTelemetry, routes=routes, observe=observed.observe_request)
    return app
