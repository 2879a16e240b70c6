"""The rerank stage at the edges: `rerank` on a search request, RAGTUNE_RERANKER as a name under the
data dir or a directory, and the errors a person can act on."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main
from api.services import Services
from api.settings import Settings
from tests.api.test_http import _upload, _wait
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL
from tests.retrieval.test_rerank import tiny_cross_encoder


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, Services(settings, embedder=FakeEmbedder())),
                      base_url=LOCAL_URL)


def test_search_reranks_on_request_with_a_named_reranker(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tiny_cross_encoder(data / "rerankers" / "tiny")
    settings = Settings(data_dir=data, chunk_size=64, chunk_overlap=8, reranker="tiny",
                        rerank_top_n=5)
    assert settings.reranker_dir() == data / "rerankers" / "tiny"
    with _client(settings) as c:
        c.post("/v1/collections", json={"name": "kb"})
        _wait(c, _upload(c, [(f"d{i}.txt", f"pump {i} moves water uphill".encode())
                             for i in range(8)]).json()["job_id"])
        plain = c.post("/v1/collections/kb/search", json={"query": "pump water", "k": 3}).json()
        ranked = c.post("/v1/collections/kb/search",
                        json={"query": "pump water", "k": 3, "rerank": True}).json()
    assert len(plain["hits"]) == len(ranked["hits"]) == 3
    first = {h["chunk_id"]: h["score"] for h in plain["hits"]}
    assert all(first.get(h["chunk_id"], h["score"]) == h["score"] for h in ranked["hits"]), \
        "scores stay cosine"


def test_rerank_without_a_reranker_is_a_422_and_a_bad_directory_a_503(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", chunk_size=64, chunk_overlap=8)
    with _client(settings) as c:
        c.post("/v1/collections", json={"name": "kb"})
        r = c.post("/v1/collections/kb/search", json={"query": "pump", "rerank": True})
    assert r.status_code == 422 and "RAGTUNE_RERANKER" in r.json()["detail"]
    bad = settings.model_copy(update={"reranker": str(tmp_path / "not-a-model")})
    with _client(bad) as c:
        _wait(c, _upload(c, [("a.txt", b"pump one"), ("b.txt", b"pump two")]).json()["job_id"])
        r = c.post("/v1/collections/kb/search", json={"query": "pump", "rerank": True})
    assert r.status_code == 503 and r.json()["error"] == "reranker_unavailable"
    with pytest.raises(ValueError, match="RAGTUNE_RERANK=true needs RAGTUNE_RERANKER"):
        Settings(rerank=True)


def test_cli_lists_rerankers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    (data / "rerankers" / "mine").mkdir(parents=True)
    (data / "rerankers" / "mine" / "reranker.json").write_text(
        '{"top_n": 20, "weight": 0.7, "dev_ndcg10": 0.8, "dev_ndcg10_first_stage": 0.7}')
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(data))
    assert main(["rerank", "list"]) == 0
    assert "mine\ttop_n 20\tweight 0.7\tdev nDCG@10 0.7 -> 0.8" in capsys.readouterr().out


class _Searched(Exception):
    pass


def test_ask_passes_rerank_to_the_search_for_its_passages(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    svc = Services(Settings(data_dir=tmp_path / "data", screen="off"), embedder=FakeEmbedder())
    seen: list[bool | None] = []

    def spy(name: str, query: str, k: int, flt: object = None, mode: object = None,
            rerank: bool | None = None) -> list[object]:
        seen.append(rerank)
        raise _Searched

    monkeypatch.setattr(svc, "search", spy)
    for flag in (True, None):
        with pytest.raises(_Searched):
            list(svc.screened_ask("kb", "which pump?", svc.ask_config(), None, flag))
    assert seen == [True, None]
