"""The LangChain retriever (api/retriever.py) and the HTTP client under it (api/client.py), against
a live server: uvicorn on a free loopback port, serving two documents with the fake embedder."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from langchain_core.documents import Document

from api.app import create_app
from api.client import RagtuneClient, RagtuneError
from api.keys import KeyStore
from api.retriever import RagtuneRetriever
from api.services import Services
from api.settings import Settings
from ingest.pipeline import IngestPipeline
from ingest.types import LoadedDocument, Page
from tests.fakes import FakeEmbedder
from tests.helpers import serving

PUMPS = "The blue pump moves water uphill. Pumps need oil every spring."
VALVES = "The red valve stops the water. Valves are checked every autumn."


@dataclass
class Live:
    url: str
    settings: Settings


def _doc(source: str, text: str, team: str) -> LoadedDocument:
    return LoadedDocument(source=source, content=text.encode(), pages=[Page(text)], format="txt",
                          metadata={"team": team, "source": "a metadata key named source"})


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("live") / "data", chunk_size=64,
                        chunk_overlap=8, rate_limit_per_minute=0)
    services = Services(settings, embedder=FakeEmbedder())
    services.create_collection("kb")
    IngestPipeline.for_collection(services.collection("kb"), services.embedder).run(
        [_doc("pumps.txt", PUMPS, "ops"), _doc("valves.txt", VALVES, "plant")])
    with serving(create_app(settings, services)) as url:
        yield Live(url, settings)


def _retriever(live: Live, **fields: object) -> RagtuneRetriever:
    return RagtuneRetriever(base_url=live.url, collection="kb", **fields)  # type: ignore[arg-type]


def test_documents_carry_the_chunk_text_score_and_metadata(live: Live) -> None:
    docs = _retriever(live, k=2).invoke("blue pump water uphill")
    assert len(docs) == 2 and all(isinstance(d, Document) for d in docs)
    best = docs[0]
    assert best.page_content == PUMPS
    meta = best.metadata
    assert meta["source"] == "pumps.txt" and meta["team"] == "ops"  # the hit's source wins
    assert {"doc_id", "chunk_id", "page", "score"} <= set(meta)
    assert isinstance(meta["score"], float) and meta["score"] >= docs[1].metadata["score"]


def test_k_mode_and_filters_go_to_the_server(live: Live) -> None:
    assert len(_retriever(live, k=1).invoke("water")) == 1
    by_team = _retriever(live, k=5, filter={"metadata": {"team": "plant"}}).invoke("water")
    assert [d.metadata["source"] for d in by_team] == ["valves.txt"]
    by_source = _retriever(live, filter={"source": "pumps.txt"}).invoke("valve")
    assert [d.metadata["source"] for d in by_source] == ["pumps.txt"]
    keyword = _retriever(live, mode="keyword").invoke("autumn")
    assert [d.metadata["source"] for d in keyword] == ["valves.txt"]
    assert _retriever(live, filter={"metadata": {"team": "nobody"}}).invoke("water") == []


def test_the_async_path_answers_the_same(live: Live) -> None:
    retriever = _retriever(live, k=2, filter={"doc_id": None, "metadata": {"team": "ops"}})
    sync = retriever.invoke("pump oil")
    awaited = asyncio.run(retriever.ainvoke("pump oil"))
    assert [d.metadata["chunk_id"] for d in awaited] == [d.metadata["chunk_id"] for d in sync]
    assert [d.metadata["source"] for d in awaited] == ["pumps.txt"]


def test_errors_are_raised_with_the_servers_reason(live: Live) -> None:
    with pytest.raises(RagtuneError) as missing:
        RagtuneRetriever(base_url=live.url, collection="nope").invoke("water")
    assert missing.value.status == 404 and missing.value.error == "not_found"
    with RagtuneClient(live.url) as client, pytest.raises(RagtuneError) as bad:
        client.search("kb", "water", filter={"team": "ops"})  # metadata outside its wrapper
    assert bad.value.status == 422 and "metadata" in bad.value.detail


def test_a_key_is_sent_as_a_bearer_token(live: Live) -> None:
    store = KeyStore.in_data_dir(live.settings.data_dir)
    _, secret = store.create("lc-reader", "read", ["kb"])
    try:
        with pytest.raises(RagtuneError) as refused:
            _retriever(live).invoke("water")
        assert refused.value.status == 401
        docs = _retriever(live, api_key=secret, k=1).invoke("water")
        assert len(docs) == 1
        assert len(asyncio.run(_retriever(live, api_key=secret).ainvoke("water"))) == 2
        with pytest.raises(RagtuneError) as wrong:
            _retriever(live, api_key=secret[:-2] + "xx").invoke("water")
        assert wrong.value.status == 401
    finally:
        store.revoke("lc-reader")


def test_the_client_parses_hits(live: Live) -> None:
    with RagtuneClient(live.url + "/") as client:
        hits = client.search("kb", "red valve", k=1, mode="dense")
    assert [h.source for h in hits] == ["valves.txt"] and hits[0].text == VALVES
