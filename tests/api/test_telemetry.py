"""Request ids and structured logs (api/telemetry.py, api/logs.py): the id is taken from
`X-Request-ID` or made, echoed on every reply (errors and early refusals too), and carried by the
JSON log lines written for the request."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import logs
from api.app import create_app
from api.auth import needs
from api.keys import KeyStore
from api.services import Services
from api.settings import Settings
from api.telemetry import incoming_id
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", rate_limit_per_minute=0)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    app = create_app(settings, Services(settings, embedder=FakeEmbedder()))

    @app.get("/v1/collections/{name}/boom", include_in_schema=False)
    def boom(name: str) -> None:
        logging.getLogger("ragtune.test").warning("about to fail for %s", name)
        raise RuntimeError("a bug")

    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=LOCAL_URL, raise_server_exceptions=False) as c:
        yield c


class JsonLines(logging.Handler):
    """What `ragtune serve` writes, one parsed line per record (formatted as it is emitted, in the
    thread and context that wrote it, as a stream handler does)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logs.JsonFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def written() -> Iterator[list[dict[str, object]]]:
    handler, logger = JsonLines(), logging.getLogger("ragtune")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_an_incoming_id_is_echoed_and_a_missing_one_is_made(client: TestClient) -> None:
    reply = client.get("/healthz", headers={"X-Request-ID": "trace-42.a:b"})
    assert reply.headers["x-request-id"] == "trace-42.a:b"
    made = [client.get("/healthz").headers["x-request-id"] for _ in range(2)]
    assert made[0] != made[1] and all(len(m) == 32 for m in made)


def test_an_unsafe_or_overlong_id_is_replaced() -> None:
    assert incoming_id("ok-1") == "ok-1"
    for bad in ("a b", "x\r\nSet-Cookie: y", "é", "a" * 129, "", None):
        made = incoming_id(bad)
        assert made != bad and len(made) == 32


def test_errors_and_early_refusals_carry_the_id(client: TestClient, settings: Settings) -> None:
    rid = {"X-Request-ID": "req-1"}
    missing = client.get("/v1/collections/nope", headers=rid)
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "req-1"
    assert client.get("/no/such/path", headers=rid).headers["x-request-id"] == "req-1"
    invalid = client.post("/v1/collections", json={"nam": "x"}, headers=rid)
    assert invalid.status_code == 422 and invalid.headers["x-request-id"] == "req-1"
    guarded = client.get("/healthz", headers={**rid, "Host": "evil.example"})  # the Host guard
    assert guarded.status_code == 400 and guarded.headers["x-request-id"] == "req-1"
    crashed = client.get("/v1/collections/kb/boom", headers=rid)  # Starlette's outer 500
    assert crashed.status_code == 500 and crashed.json()["error"] == "internal"
    assert crashed.headers["x-request-id"] == "req-1"
    KeyStore.in_data_dir(settings.data_dir).create("admin", "admin")
    refused = client.get("/v1/collections", headers=rid)  # the key check
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "req-1"


def test_access_lines_are_json_with_the_request_id(client: TestClient,
                                                   written: list[dict[str, object]]) -> None:
    client.post("/v1/collections", json={"name": "kb"}, headers={"X-Request-ID": "make-kb"})
    client.get("/healthz")
    client.get("/v1/collections/kb/boom", headers={"X-Request-ID": "boom-1"})
    lines = list(written)
    made = next(x for x in lines if x["logger"] == "ragtune.access" and x["method"] == "POST")
    assert made["request_id"] == "make-kb" and made["level"] == "INFO"
    assert made["path"] == "/v1/collections" and made["route"] == "/v1/collections"
    assert made["status"] == 201 and isinstance(made["duration_ms"], float)
    assert str(made["message"]).startswith("POST /v1/collections 201 ")
    assert str(made["time"]).endswith("+00:00")
    health = next(x for x in lines if x.get("path") == "/healthz")
    assert health["level"] == "DEBUG"  # probes every few seconds: below INFO
    # lines written inside the request, and by the 500 handler after it, carry its id
    inside = next(x for x in lines if x["logger"] == "ragtune.test")
    assert inside["request_id"] == "boom-1" and inside["message"] == "about to fail for kb"
    failed = next(x for x in lines if x["logger"] == "ragtune.api" and x["level"] == "ERROR")
    assert failed["request_id"] == "boom-1" and "RuntimeError: a bug" in str(failed["exception"])
    access = next(x for x in lines if x.get("route") == "/v1/collections/{name}/boom")
    assert access["status"] == 500 and access["request_id"] == "boom-1"


def test_a_line_outside_any_request_has_no_id() -> None:
    record = logging.LogRecord("ragtune", logging.INFO, __file__, 1, "started %d", (3,), None)
    assert logs.request_id.get() is None
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["message"] == "started 3" and line["request_id"] is None
    assert set(line) == {"time", "level", "logger", "message", "request_id"}


def test_plain_logs_on_a_terminal_json_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.resolve_format("auto", Tty()) == "plain"
    assert logs.resolve_format("auto", io.StringIO()) == "json"
    assert logs.resolve_format("json", Tty()) == "json"
    record = logging.LogRecord("ragtune", logging.WARNING, __file__, 1, "slow", (), None)
    token = logs.request_id.set("r-9")
    try:
        assert logs.PlainFormatter().format(record) == "WARNING ragtune: slow [r-9]"
    finally:
        logs.request_id.reset(token)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert logs.configure("json") == "json"
        assert [type(h.formatter) for h in root.handlers] == [logs.JsonFormatter]
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_metrics_need_the_read_scope() -> None:
    assert needs("GET", "/metrics") == ("read", None)
    assert needs("GET", "/healthz") is None

