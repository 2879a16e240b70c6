"""The browser threat on loopback (api/guard.py): another web site, or a rebound host name, cannot
drive or read the API; same-origin pages and non-browser clients can."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.guard import check, host_name, is_loopback
from api.services import Services
from api.settings import Settings
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL

EVIL = "http://evil.example"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, Services(settings, embedder=FakeEmbedder())),
                      base_url=LOCAL_URL)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with _client(settings) as c:
        yield c


def _refused(response: object, status: int, error: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"] == error and body["detail"]


def test_a_foreign_host_name_is_refused_even_for_reads(client: TestClient) -> None:
    _refused(client.get("/healthz", headers={"Host": "attacker.example"}), 400, "host_not_allowed")
    _refused(client.get("/v1/collections", headers={"Host": "127.evil.example:8000"}), 400,
             "host_not_allowed")
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host


def test_cross_origin_state_changes_are_refused(client: TestClient) -> None:
    _refused(client.post("/v1/collections", json={"name": "kb"}, headers={"Origin": EVIL}), 403,
             "cross_origin")
    _refused(client.post("/v1/adapters/deactivate", headers={"Origin": EVIL}), 403, "cross_origin")
    upload = client.post("/v1/collections/kb/documents", headers={"Origin": EVIL},
                         files={"files": ("a.txt", b"hello", "text/plain")})
    _refused(upload, 403, "cross_origin")
    # a page on another port of this machine is same-site, not same-origin
    _refused(client.post("/v1/collections", json={"name": "kb"},
                         headers={"Sec-Fetch-Site": "same-site"}), 403, "cross_origin")
    _refused(client.delete("/v1/collections/kb", headers={"Origin": "null"}), 403, "cross_origin")
    assert client.get("/v1/collections/kb").status_code == 404  # nothing was created


def test_a_text_plain_json_body_is_refused(client: TestClient) -> None:
    body = json.dumps({"name": "kb"})
    _refused(client.post("/v1/collections", content=body, headers={"Content-Type": "text/plain"}),
             415, "unsupported_media_type")
    _refused(client.post("/v1/tuning/jobs", content=json.dumps({"name": "x"}),
                         headers={"Content-Type": "application/x-www-form-urlencoded"}),
             415, "unsupported_media_type")
    _refused(client.post("/v1/collections", content=body, headers={"Content-Type": ""}), 415,
             "unsupported_media_type")


def test_same_origin_pages_and_non_browser_clients_pass(client: TestClient) -> None:
    same = client.post("/v1/collections", json={"name": "kb"},
                       headers={"Origin": LOCAL_URL, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 201, same.text
    plain = client.post("/v1/collections", json={"name": "kb2"})  # curl, the OpenAI SDK
    assert plain.status_code == 201, plain.text
    typed = client.post("/v1/collections", content=json.dumps({"name": "kb3"}),
                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert typed.status_code == 201, typed.text
    assert "access-control-allow-origin" not in client.get("/healthz", headers={
        "Origin": EVIL}).headers


def test_listed_origins_and_hosts_are_allowed(tmp_path: Path) -> None:
    app_origin = "http://localhost:3000"
    settings = Settings(data_dir=tmp_path / "data", cors_origins=app_origin + "/",
                        allowed_hosts="kb.internal")
    with _client(settings) as client:
        ok = client.post("/v1/collections", json={"name": "kb"},
                         headers={"Origin": app_origin, "Sec-Fetch-Site": "same-site"})
        assert ok.status_code == 201, ok.text
        assert ok.headers["access-control-allow-origin"] == app_origin
        assert client.get("/healthz", headers={"Host": "kb.internal:8000"}).status_code == 200
        _refused(client.post("/v1/collections", json={"name": "x"}, headers={"Origin": EVIL}),
                 403, "cross_origin")
    with _client(Settings(data_dir=tmp_path / "d2", allowed_hosts="*")) as client:
        assert client.get("/healthz", headers={"Host": "anything.example"}).status_code == 200


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("127.evil.example", False), ("0.0.0.0", False), ("192.168.1.5", False), ("example.com", False),
])
def test_loopback_means_this_machine_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_look_alike_loopback_bind_address_needs_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from api import cli

    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path))
    assert cli.main(["serve", "--host", "127.evil.example"]) == 2
    assert "create an API key first" in capsys.readouterr().err


def test_check_is_pure_and_names_the_problem() -> None:
    hosts = frozenset({"127.0.0.1"})
    assert host_name("[::1]:8000") == "::1" and host_name("Example.COM:80") == "example.com"
    assert check("GET", {"host": "127.0.0.1:8000", "origin": EVIL}, "http", hosts,
                 frozenset()) is None  # reads are guarded by Host (and by the absence of CORS)
    refused = check("PUT", {"host": "127.0.0.1:8000", "origin": EVIL}, "http", hosts, frozenset())
    assert refused is not None and refused[0] == 403 and "RAGTUNE_CORS_ORIGINS" in refused[2]
    chunked = check("POST", {"host": "127.0.0.1", "transfer-encoding": "chunked",
                             "content-type": "text/plain"}, "http", hosts, frozenset())
    assert chunked is not None and chunked[0] == 415
