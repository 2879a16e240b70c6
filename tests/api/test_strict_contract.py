"""The contract is strict and says what is wrong: unknown fields are refused with the nearest known
one, a misplaced filter shows the right shape, broken JSON gives its line and column, and a missing
collection names those that exist (those the caller may see)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.keys import KeyStore
from api.settings import Settings


def test_an_unknown_field_is_refused_naming_the_nearest_known_one(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
    r = client.post("/v1/collections/kb/search", json={"query": "x", "top_k": 3})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("unknown field 'top_k' (did you mean 'k'?)")
    r = client.post("/v1/collections/kb/ask", json={"question": "x", "temprature": 0.2})
    assert r.status_code == 422 and "did you mean 'temperature'?" in r.json()["detail"]
    r = client.post("/v1/collections", json={"name": "b", "chunk-size": 64})
    assert r.status_code == 422 and "did you mean 'chunk_size'?" in r.json()["detail"]
    assert [c["name"] for c in client.get("/v1/collections").json()] == ["kb"]


def test_a_misplaced_metadata_filter_shows_the_right_shape(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
    r = client.post("/v1/collections/kb/search", json={"query": "x", "filter": {"team": "ops"}})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith("filter: unknown field 'team'")
    assert '{"metadata": {"team": "ops"}}' in detail
    ok = client.post("/v1/collections/kb/search",
                     json={"query": "x", "filter": {"metadata": {"team": "ops"}}})
    assert ok.status_code == 200


def test_broken_json_gives_line_and_column(client: TestClient) -> None:
    assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
    r = client.post("/v1/collections/kb/search", content=b'{\n "query": "x",\n "k": }',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"] == "the body is not valid JSON: Expecting value at line 3, column 7"


def test_a_missing_collection_names_the_ones_the_caller_may_see(client: TestClient,
                                                                 settings: Settings) -> None:
    r = client.post("/v1/collections/nope/search", json={"query": "x"})
    assert r.status_code == 404 and "there are no collections yet" in r.json()["detail"]
    for name in ("a", "b"):
        assert client.post("/v1/collections", json={"name": name}).status_code == 201
    r = client.get("/v1/collections/nope")
    assert r.status_code == 404 and r.json()["collections"] == ["a", "b"]
    assert "(collections: a, b)" in r.json()["detail"]
    _, secret = KeyStore.in_data_dir(settings.data_dir).create("reader", "read", ["a", "zz"])
    r = client.post("/v1/collections/zz/search", json={"query": "x"},
                    headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 404 and r.json()["collections"] == ["a"], "b is not the key's to see"
