"""API keys (api/keys.py, api/auth.py): off until a key exists; then 401 without a valid key, 403
outside its scope or collections, 429 past its rate, and an audit line per change."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import cli
from api.app import create_app
from api.auth import RateLimiter, needs
from api.keys import KeyProblem, KeyStore
from api.services import Services
from api.settings import Settings
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", rate_limit_per_minute=0)


@pytest.fixture
def store(settings: Settings) -> KeyStore:
    return KeyStore.in_data_dir(settings.data_dir)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, Services(settings, embedder=FakeEmbedder()))
    with TestClient(app, base_url=LOCAL_URL) as c:
        yield c


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_keys_are_stored_as_salted_hashes_and_checked(store: KeyStore) -> None:
    key, secret = store.create("ci", "read", ["a", "b"])
    text = store.path.read_text()
    # rt_<id>_<secret>: the secret part is URL-safe base64 and may itself hold "_"
    assert secret.split("_", 2)[2] not in text and key.digest in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.check(secret) == key and store.check(secret + "x") is None
    assert store.check(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.check("rt_000000000000_" + "a" * 40) is None and store.check("nonsense") is None
    other, other_secret = store.create("ci2", "read")
    assert key.salt != other.salt and store.check(other_secret) == other
    with pytest.raises(KeyProblem, match="already in force"):
        store.create("ci", "admin")
    with pytest.raises(KeyProblem, match="scope"):
        store.create("x", "root")
    with pytest.raises(KeyProblem, match="key name"):
        store.create("bad\n", "read")
    store.revoke("ci")
    assert store.check(secret) is None and store.check(other_secret) == other
    with pytest.raises(KeyProblem, match="no key in force"):
        store.revoke("ci")


def test_without_keys_the_loopback_api_is_open(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "a"}).status_code == 201


def test_a_key_in_force_is_needed_for_everything_but_health(client: TestClient,
                                                            store: KeyStore) -> None:
    _, admin = store.create("admin", "admin")
    refused = client.get("/v1/collections")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["error"] == "unauthorized" and "ragtune keys create" in refused.json()["detail"]
    assert client.get("/v1/collections", headers=bearer("rt_123_nope")).status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200
    assert client.get("/v1/collections", headers=bearer(admin)).status_code == 200
    assert client.get("/v1/collections", headers={"X-API-Key": admin}).status_code == 200
    store.revoke("admin")  # at once, on the running server
    store.create("other", "read")
    assert client.get("/v1/collections", headers=bearer(admin)).status_code == 401


def test_scopes_and_collections_bound_what_a_key_may_do(client: TestClient, store: KeyStore,
                                                       settings: Settings) -> None:
    _, admin = store.create("admin", "admin")
    _, reader = store.create("reader", "read", ["a"])
    _, writer = store.create("writer", "write", ["a"])
    for name in ("a", "b"):
        assert client.post("/v1/collections", json={"name": name},
                           headers=bearer(admin)).status_code == 201
    doc = {"files": ("n.txt", b"The depot opens at six.", "text/plain")}

    def status(method: str, path: str, secret: str, **kw: object) -> int:
        return client.request(method, path, headers=bearer(secret), **kw).status_code  # type: ignore[arg-type]

    assert status("POST", "/v1/collections/a/search", reader, json={"query": "depot"}) == 200
    assert status("POST", "/v1/collections/b/search", reader, json={"query": "depot"}) == 403
    assert status("POST", "/v1/collections/a/documents", reader, files=doc) == 403
    assert status("POST", "/v1/collections/a/documents", writer, files=doc) == 202
    assert status("POST", "/v1/collections/b/documents", writer, files=doc) == 403
    assert status("DELETE", "/v1/collections/b", writer) == 403
    assert status("POST", "/v1/collections", writer, json={"name": "c"}) == 403  # limited key
    assert status("GET", "/v1/tuning/jobs", writer) == 403
    assert status("POST", "/v1/adapters/deactivate", writer) == 403
    assert status("POST", "/v1/adapters/deactivate", admin) == 200
    chat = {"model": "b", "messages": [{"role": "user", "content": "When does it open?"}]}
    forbidden = client.post("/v1/chat/completions", json=chat, headers=bearer(reader))
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"
    listed = client.get("/v1/collections", headers=bearer(reader)).json()
    assert [c["name"] for c in listed] == ["a"]
    body = client.post("/v1/collections/b/search", json={"query": "x"}, headers=bearer(reader)).json()
    assert body["error"] == "forbidden" and "'b'" in body["detail"]
    audit = [json.loads(line) for line in (settings.data_dir / "audit.log").read_text().splitlines()]
    assert any(a["key"] == "writer" and a["path"] == "/v1/collections/a/documents"
               and a["status"] == 202 for a in audit)
    assert any(a["key"] == "admin" and a["path"] == "/v1/adapters/deactivate" for a in audit)
    assert all(a["method"] != "GET" for a in audit)


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", rate_limit_per_minute=3)
    _, secret = KeyStore.in_data_dir(settings.data_dir).create("busy", "read")
    app = create_app(settings, Services(settings, embedder=FakeEmbedder()))
    with TestClient(app, base_url=LOCAL_URL) as client:
        codes = [client.get("/v1/collections", headers=bearer(secret)) for _ in range(4)]
    assert [c.status_code for c in codes] == [200, 200, 200, 429]
    assert int(codes[-1].headers["retry-after"]) >= 1 and codes[-1].json()["error"] == "rate_limited"
    limiter = RateLimiter(2)
    assert [limiter.retry_after("k", t) for t in (0.0, 1.0, 2.0)] == [0, 0, 59]
    assert limiter.retry_after("k", 61.0) == 0  # the window moved on


@pytest.mark.parametrize(("method", "path", "need"), [
    ("GET", "/healthz", None), ("GET", "/", None), ("GET", "/openapi.json", None),
    ("GET", "/static/app.js", None),
    ("GET", "/v1/collections", ("read", None)), ("POST", "/v1/collections", ("write", "")),
    ("POST", "/v1/collections/kb/ask", ("read", "kb")),
    ("DELETE", "/v1/collections/kb/documents/x", ("write", "kb")),
    ("POST", "/v1/collections/kb/evals", ("write", "kb")),
    ("POST", "/v1/chat/completions", ("read", None)), ("POST", "/v1/tuning/jobs", ("admin", None)),
    ("GET", "/v1/tuning/jobs", ("admin", None)), ("POST", "/v1/adapters/x/activate", ("admin", None)),
    ("POST", "/v1/classifiers/x/predict", ("read", None)), ("POST", "/v1/something-new", ("admin", None)),
])
def test_needs_maps_each_route_to_a_scope(method: str, path: str,
                                          need: tuple[str, str | None] | None) -> None:
    assert needs(method, path) == need


def test_cli_creates_lists_and_revokes_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path))
    assert cli.main(["keys", "create", "--name", "ops", "--scope", "write", "--collections", "a,b"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert KeyStore.in_data_dir(tmp_path).check(secret) is not None
    assert cli.main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    hidden = secret.split("_", 2)[2]  # rt_<id>_<secret>: the id is listed, the secret never
    assert "ops\twrite\ta,b" in listed and hidden not in listed
    assert cli.main(["keys", "revoke", "ops"]) == 0
    assert KeyStore.in_data_dir(tmp_path).check(secret) is None
    assert cli.main(["keys", "revoke", "ops"]) == 2
    assert "no key in force" in capsys.readouterr().err
