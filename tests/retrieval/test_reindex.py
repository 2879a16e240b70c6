"""Rebuilding a collection's index as another type from its stored embeddings, with recall@10."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api import cli, cli_collections
from api.corpus import Corpus
from retrieval.catalog import Catalog
from retrieval.collection import CollectionConfig
from retrieval.errors import UnknownIndex
from retrieval.types import ChunkRecord, DocumentRecord
from tests.fakes import FakeEmbedder

WORDS = "pump valve invoice badge printer leak holiday password meeting parking".split()


def _fill(catalog: Catalog, docs: int = 60) -> None:
    emb = FakeEmbedder()
    coll = catalog.create(CollectionConfig(name="kb", embedder=emb.name, dim=emb.dim))
    items = []
    for d in range(docs):
        texts = [f"{WORDS[d % 10]} {WORDS[(d + c) % 10]} note {d} {c}" for c in range(5)]
        items.append((DocumentRecord(doc_id=f"d{d}", source=f"d{d}.txt", format="txt", size_bytes=1),
                      [ChunkRecord(text=t) for t in texts], emb.embed_batch(texts)))
    coll.commit(items)
    coll.flush()


def test_reindex_builds_the_new_type_from_stored_embeddings(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    _fill(catalog)
    query = FakeEmbedder().embed_batch(["badge leak note"])
    before = catalog.get("kb").search(query, 10)[0]

    built = catalog.reindex("kb", "hnsw")
    assert built.chunks == 300 and built.queries == 200 and built.recall is not None
    assert built.recall >= 0.95
    root = tmp_path / "collections" / "kb"
    assert json.loads((root / "collection.json").read_text())["index_type"] == "hnsw"
    assert (root / "index.hnsw.npz").is_file() and not (root / "index.faiss").exists()
    reopened = Catalog(tmp_path).get("kb")
    assert reopened.config.index_type == "hnsw" and len(reopened.index) == 300
    assert reopened.reconcile() == (0, 0), "the built index holds exactly the docstore's chunks"
    after = reopened.search(query, 10)[0]
    assert [h.chunk_id for h in after][:5] == [h.chunk_id for h in before][:5]

    with pytest.raises(UnknownIndex):
        catalog.reindex("kb", "nope")


def test_reindex_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(cli, "open_corpus", lambda s: Corpus(s, embedder=FakeEmbedder()))
    monkeypatch.setattr(cli_collections, "open_corpus", lambda s: Corpus(s, embedder=FakeEmbedder()))
    _fill(Catalog(tmp_path))
    assert cli.main(["collections", "reindex", "kb", "--index", "ivfpq"]) == 0
    out = capsys.readouterr().out
    assert "reindexed kb as ivfpq from its stored embeddings: 300 chunks" in out
    assert "recall@10 1.0000 against exact search (200 stored vectors as queries)" in out
    assert cli.main(["collections", "reindex", "kb"]) == 2
    assert "needs --index TYPE" in capsys.readouterr().err
    assert Catalog(tmp_path).get("kb").config.index_type == "ivfpq"
