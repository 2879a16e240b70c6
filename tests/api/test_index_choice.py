"""Choosing a collection's vector index: over HTTP, on the command line, and by RAGTUNE_INDEX."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api import cli, cli_collections
from api.corpus import Corpus
from api.settings import Settings
from tests.fakes import FakeEmbedder


def test_http_create_names_its_index(client: TestClient) -> None:
    r = client.post("/v1/collections", json={"name": "big", "index": "hnsw"})
    assert r.status_code == 201 and r.json()["index"] == "hnsw"
    assert client.post("/v1/collections", json={"name": "kb"}).json()["index"] == "flat"
    assert {c["name"]: c["index"] for c in client.get("/v1/collections").json()} == {
        "big": "hnsw", "kb": "flat"}
    assert client.get("/v1/collections/big").json()["index"] == "hnsw"


def test_http_unknown_index_is_422_naming_the_known_ones(client: TestClient) -> None:
    r = client.post("/v1/collections", json={"name": "kb", "index": "annoy"})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid" and "flat, hnsw, ivfpq, numpy" in r.json()["detail"]
    assert client.get("/v1/collections").json() == []


def test_cli_create_with_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAGTUNE_INDEX", "ivfpq")
    embedder = FakeEmbedder()
    monkeypatch.setattr(cli, "open_corpus", lambda s: Corpus(s, embedder=embedder))
    monkeypatch.setattr(cli_collections, "open_corpus", lambda s: Corpus(s, embedder=embedder))
    assert cli.main(["collections", "create", "kb", "--index", "hnsw"]) == 0
    assert "index=hnsw" in capsys.readouterr().out
    assert cli.main(["collections", "create", "other"]) == 0
    assert "index=ivfpq" in capsys.readouterr().out, "RAGTUNE_INDEX is the default"
    assert cli.main(["collections", "create", "bad", "--index", "annoy"]) == 2
    assert "index 'annoy' is not one of flat, hnsw, ivfpq, numpy" in capsys.readouterr().err


def test_unknown_index_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="RAGTUNE_INDEX=annoy must be one of"):
        Settings(data_dir=tmp_path, index="annoy")
