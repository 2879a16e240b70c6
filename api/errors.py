"""Domain errors translated once into HTTP status codes and JSON bodies a person can act on.

Anything else, a bare ValueError included, is a bug rather than the client's mistake: a JSON 500,
its traceback in the server log. Inner packages raise a domain error (InvalidConfig, InvalidRequest,
InvalidSearch, ...) for what a person got wrong.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from generation.errors import (
    AdapterError,
    AdapterInUse,
    AdapterMismatch,
    AdapterNotFound,
    GenerationError,
    InvalidRequest,
    ModelImportError,
    ModelNotFound,
    PromptTooLong,
    ServerBusy,
)
from guardrails.errors import ScreenError
from ingest.errors import IngestError, UnsupportedFileType
from retrieval.errors import (
    CollectionExists,
    CollectionNotFound,
    DocumentNotFound,
    EmbedderMismatch,
    InvalidCollectionConfig,
    InvalidName,
    InvalidSearch,
    RerankerUnavailable,
    UnknownIndex,
)
from tasks.errors import TaskError, TaskNotFound
from tuning.errors import (
    ClassifierMismatch,
    ClassifierNotFound,
    DatasetError,
    DatasetNotFound,
    InvalidConfig,
    JobNotFound,
    JobStateError,
    TuningError,
)

from .logs import request_id_header

log = logging.getLogger("ragtune.api")


class UploadTooLarge(Exception):
    def __init__(self, source: str, limit_mb: float) -> None:
        super().__init__(f"{source!r} is larger than the {limit_mb:g} MB limit per file "
                         "(RAGTUNE_MAX_UPLOAD_MB)")


class BadRequest(Exception):
    """A request that is well-formed JSON/multipart but makes no sense (422)."""


class NotFound(Exception):
    """A resource that is not there (404)."""


class Forbidden(Exception):
    """A request the caller's API key may not make (403)."""


STATUS: list[tuple[type[Exception], int, str]] = [
    (CollectionNotFound, 404, "not_found"),
    (DocumentNotFound, 404, "not_found"),
    (NotFound, 404, "not_found"),
    (Forbidden, 403, "forbidden"),
    (AdapterNotFound, 404, "adapter_not_found"),
    (AdapterMismatch, 409, "adapter_mismatch"),
    (AdapterInUse, 409, "adapter_in_use"),
    (JobNotFound, 404, "not_found"),
    (DatasetNotFound, 404, "not_found"),
    (JobStateError, 409, "conflict"),
    (ClassifierNotFound, 404, "classifier_not_found"),
    (TaskNotFound, 404, "task_not_found"),
    (ClassifierMismatch, 409, "embedder_mismatch"),
    (ModelNotFound, 404, "model_not_found"),
    (CollectionExists, 409, "conflict"),
    (EmbedderMismatch, 409, "embedder_mismatch"),
    (UploadTooLarge, 413, "too_large"),
    (UnsupportedFileType, 415, "unsupported_type"),
    (InvalidName, 422, "invalid"),
    (InvalidSearch, 422, "invalid"),
    (InvalidCollectionConfig, 422, "invalid"),
    (UnknownIndex, 422, "invalid"),
    (InvalidConfig, 422, "invalid"),
    (InvalidRequest, 422, "invalid"),
    (TaskError, 422, "invalid"),
    (BadRequest, 422, "invalid"),
    (IngestError, 422, "ingest_error"),
    (PromptTooLong, 422, "prompt_too_long"),
    (ModelImportError, 422, "model_import_failed"),
    (TuningError, 422, "tuning_error"),
    (AdapterError, 422, "adapter_error"),
    (GenerationError, 503, "generator_unavailable"),
    (ScreenError, 503, "screen_unavailable"),
    (RerankerUnavailable, 503, "reranker_unavailable"),
]


def _body(status: int, error: str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": message, **extra})


def without_data_dir(text: str, root: Path) -> str:
    """`text` with the data dir's path taken out, so paths inside it read relative to it."""
    for prefix in {str(root.resolve()), str(root.absolute()), str(root)}:
        text = text.replace(prefix + "/", "")
    return text


def relative(request: Request, message: str) -> str:
    """An error message as the API shows it (`without_data_dir`)."""
    services = getattr(request.app.state, "services", None)
    root = getattr(getattr(services, "settings", None), "data_dir", None)
    return message if root is None else without_data_dir(message, Path(root))


def install(app: FastAPI) -> None:
    for exc_type, status, name in STATUS:
        def handler(request: Request, exc: Exception, status: int = status,
                    name: str = name) -> JSONResponse:
            return _body(status, name, relative(request, str(exc)))

        app.add_exception_handler(exc_type, handler)

    @app.exception_handler(CollectionNotFound)
    def _no_collection(request: Request, exc: CollectionNotFound) -> JSONResponse:
        # say which exist: those the caller may read (a key limited to some sees only those)
        services, key = getattr(request.app.state, "services", None), getattr(
            request.state, "api_key", None)
        names = [n for n in (services.catalog.names() if services is not None else [])
                 if key is None or key.allows("read", n)]
        where = f"collections: {', '.join(names)}" if names else "there are no collections yet"
        return _body(404, "not_found", f"{exc} ({where})", collections=names)

    @app.exception_handler(ServerBusy)
    def _busy(request: Request, exc: ServerBusy) -> JSONResponse:
        reply = _body(503, "busy", relative(request, str(exc)), retry_after_s=exc.retry_after_s)
        reply.headers["Retry-After"] = str(exc.retry_after_s)
        return reply

    @app.exception_handler(DatasetError)
    def _dataset(request: Request, exc: DatasetError) -> JSONResponse:
        problems = [{"line": p.line, "field": p.field, "message": p.message} for p in exc.problems]
        return _body(422, "invalid_dataset", relative(request, str(exc)), line=exc.line,
                     field=exc.field, problems=problems)

    @app.exception_handler(RequestValidationError)
    def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [_validation_message(e, exc.body) for e in exc.errors()]
        return _body(422, "invalid", "; ".join(parts), errors=_jsonable(exc.errors()))

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # a bug, not bad input: still a JSON body, and the traceback in the server log (called
        # from another thread, outside the `except`, hence exc_info=exc, not log.exception)
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        reply = _body(500, "internal", f"internal error ({type(exc).__name__}); see the server log")
        reply.headers.update(request_id_header())  # sent outside the middleware that adds it
        return reply

    @app.exception_handler(StarletteHTTPException)
    def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _body(exc.status_code, "http_error", str(exc.detail))


def _validation_message(error: Any, body: Any) -> str:
    """One validation error as a person reads it: where (a field path, or line and column of
    broken JSON), then what is wrong."""
    loc = [x for x in error["loc"] if x != "body"]
    if error["type"] == "json_invalid" and loc and isinstance(loc[0], int):
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
        pos = loc[0]
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        return f"the body is not valid JSON: {reason} at line {line}, column {column}"
    where = ".".join(str(x) for x in loc)
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def _jsonable(errors: object) -> object:
    import json

    return json.loads(json.dumps(errors, default=str))
