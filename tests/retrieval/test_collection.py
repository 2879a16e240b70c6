"""Collections: dedup, replace, delete, filters, and agreement of index and docstore after crashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.catalog import Catalog
from retrieval.collection import CollectionConfig
from retrieval.errors import CollectionExists, CollectionNotFound, InvalidName, UnknownIndex
from retrieval.index import INDEXES, FaissIndex
from retrieval.types import SearchFilter
from tests.fakes import FakeEmbedder
from tests.helpers import make_collection, pipeline, text_doc


def _agree(coll) -> None:  # type: ignore[no-untyped-def]
    assert sorted(coll.index.ids().tolist()) == sorted(coll.docstore.chunk_ids().tolist())
    for doc in coll.documents():
        flt = SearchFilter(doc_id=doc.doc_id)
        assert len(coll.docstore.filtered_chunk_ids(flt)) == doc.n_chunks


def test_reuploading_identical_content_adds_nothing(tmp_path: Path,
                                                    fake_embedder: FakeEmbedder) -> None:
    coll = make_collection(tmp_path, fake_embedder)
    first = pipeline(coll, fake_embedder).run([text_doc("a.txt", "apples grow on trees")])
    calls = fake_embedder.calls
    again = pipeline(coll, fake_embedder).run([text_doc("copy.txt", "apples grow on trees")])
    assert first.count("added") == 1 and again.count("unchanged") == 1
    assert again.chunks_added == 0 and fake_embedder.calls == calls, "no re-embedding"
    assert coll.stats() == {"documents": 1, "chunks": 1}


def test_changed_file_replaces_old_version(tmp_path: Path, fake_embedder: FakeEmbedder) -> None:
    coll = make_collection(tmp_path, fake_embedder)
    pipeline(coll, fake_embedder).run([text_doc("a.txt", "the tariff is ten pounds")])
    report = pipeline(coll, fake_embedder).run([text_doc("a.txt", "the tariff is twelve pounds")])
    assert report.results[0].status == "replaced"
    docs = coll.documents()
    assert len(docs) == 1 and docs[0].doc_id == report.results[0].doc_id
    hits = coll.search(fake_embedder.embed_batch(["tariff pounds"]), 5)[0]
    assert [h.text for h in hits] == ["the tariff is twelve pounds"]
    _agree(coll)


def test_delete_removes_from_index_and_docstore(tmp_path: Path,
                                                fake_embedder: FakeEmbedder) -> None:
    coll = make_collection(tmp_path, fake_embedder)
    report = pipeline(coll, fake_embedder).run(
        [text_doc("a.txt", "red apples"), text_doc("b.txt", "green pears")])
    doc_a = report.results[0].doc_id
    assert coll.delete_document(doc_a) is True
    assert coll.delete_document(doc_a) is False
    hits = coll.search(fake_embedder.embed_batch(["red apples"]), 5)[0]
    assert all(h.doc_id != doc_a for h in hits)
    _agree(coll)


def test_filters_are_applied_inside_the_index(tmp_path: Path,
                                              fake_embedder: FakeEmbedder) -> None:
    coll = make_collection(tmp_path, fake_embedder)
    docs = [text_doc(f"d{i}.txt", f"water report number {i}") for i in range(30)]
    docs[7].metadata["team"] = "ops"
    pipeline(coll, fake_embedder).run(docs)
    query = fake_embedder.embed_batch(["water report"])
    hits = coll.search(query, 3, SearchFilter(source="d7.txt"))[0]
    assert [h.source for h in hits] == ["d7.txt"], "a k=3 search still finds the one match"
    hits = coll.search(query, 3, SearchFilter(metadata={"team": "ops"}))[0]
    assert [h.source for h in hits] == ["d7.txt"]
    assert coll.search(query, 3, SearchFilter(source="nope"))[0] == []
    with pytest.raises(ValueError, match="metadata filter key"):
        coll.search(query, 3, SearchFilter(metadata={"a'); DROP": 1}))


def test_docstore_commit_without_index_save_is_recovered(tmp_path: Path,
                                                         fake_embedder: FakeEmbedder) -> None:
    """Crash after the docstore commit, before the index file was written."""
    coll = make_collection(tmp_path, fake_embedder)
    pipeline(coll, fake_embedder).run([text_doc("a.txt", "alpha beta")])
    coll.commit([(_record("b.txt", "gamma"), *_chunks(fake_embedder, "gamma delta"))])
    coll.docstore.close()  # no flush: the index file on disk lacks b.txt
    reopened = Catalog(tmp_path).get("kb")
    _agree(reopened)
    hits = reopened.search(fake_embedder.embed_batch(["gamma delta"]), 1)[0]
    assert hits[0].source == "b.txt"


def test_index_written_but_docstore_not_committed_is_recovered(
        tmp_path: Path, fake_embedder: FakeEmbedder) -> None:
    """Crash after the index file was written, before the docstore committed."""
    coll = make_collection(tmp_path, fake_embedder)
    pipeline(coll, fake_embedder).run([text_doc("a.txt", "alpha beta")])
    orphan = FaissIndex.load(coll.root / "index.faiss", fake_embedder.dim, use_gpu=False)
    orphan.add(np.array([999_999]), fake_embedder.embed_batch(["never committed"]))
    orphan.save(coll.root / "index.faiss")
    coll.docstore.close()
    reopened = Catalog(tmp_path).get("kb")
    _agree(reopened)
    assert 999_999 not in reopened.index.ids()


def test_unreadable_index_file_is_rebuilt(tmp_path: Path, fake_embedder: FakeEmbedder) -> None:
    coll = make_collection(tmp_path, fake_embedder)
    pipeline(coll, fake_embedder).run([text_doc("a.txt", "alpha beta")])
    coll.close()
    (tmp_path / "collections" / "kb" / "index.faiss").write_bytes(b"garbage")
    reopened = Catalog(tmp_path).get("kb")
    _agree(reopened)
    assert len(reopened.index) == 1


def test_other_process_writes_are_seen(tmp_path: Path, fake_embedder: FakeEmbedder) -> None:
    """A second handle (as another process would) commits; the first sees it on next search."""
    coll = make_collection(tmp_path, fake_embedder)
    other = Catalog(tmp_path).get("kb")
    pipeline(other, fake_embedder).run([text_doc("late.txt", "zebra crossing")])
    hits = coll.search(fake_embedder.embed_batch(["zebra crossing"]), 1)[0]
    assert hits and hits[0].source == "late.txt"


def test_catalog_rules(tmp_path: Path, fake_embedder: FakeEmbedder) -> None:
    cat = Catalog(tmp_path)
    cfg = CollectionConfig(name="kb", embedder="fake", dim=8)
    cat.create(cfg)
    with pytest.raises(CollectionExists):
        cat.create(CollectionConfig(name="kb", embedder="fake", dim=8))
    for bad in ("../x", "", "a/b", ".hidden", "x" * 65):
        with pytest.raises(InvalidName):
            cat.create(CollectionConfig(name=bad, embedder="fake", dim=8))
    with pytest.raises(ValueError, match="chunk_overlap"):
        CollectionConfig(name="y", embedder="fake", dim=8, chunk_size=32, chunk_overlap=32)
    assert cat.names() == ["kb"]
    cat.delete("kb")
    assert cat.names() == []
    with pytest.raises(CollectionNotFound):
        cat.get("kb")


@pytest.mark.parametrize("index_type", sorted(INDEXES))
def test_every_index_type_serves_a_collection(tmp_path: Path, fake_embedder: FakeEmbedder,
                                              index_type: str) -> None:
    cfg = CollectionConfig(name="kb", embedder=fake_embedder.name, dim=fake_embedder.dim,
                           chunk_size=64, chunk_overlap=8, index_type=index_type)
    coll = Catalog(tmp_path).create(cfg)
    report = pipeline(coll, fake_embedder).run(
        [text_doc(f"d{i}.txt", f"water report number {i}") for i in range(20)])
    assert coll.delete_document(report.results[3].doc_id)
    coll.close()
    assert (coll.root / INDEXES[index_type].file_name).exists()
    reopened = Catalog(tmp_path).get("kb")
    assert type(reopened.index) is INDEXES[index_type].kind
    _agree(reopened)
    query = fake_embedder.embed_batch(["water report number 7"])
    assert reopened.search(query, 1)[0][0].source == "d7.txt"
    assert [h.source for h in reopened.search(query, 3, SearchFilter(source="d9.txt"))[0]] == ["d9.txt"]


def test_existing_index_files_keep_their_names() -> None:
    assert (INDEXES["flat"].file_name, INDEXES["numpy"].file_name) == ("index.faiss", "index.npz")


def test_unknown_index_type_names_the_known_ones() -> None:
    with pytest.raises(UnknownIndex, match="flat, hnsw, ivfpq, numpy"):
        CollectionConfig(name="kb", embedder="fake", dim=8, index_type="annoy")


def _record(source: str, text: str):  # type: ignore[no-untyped-def]
    from ingest.pipeline import document_id
    from retrieval.types import DocumentRecord

    return DocumentRecord(doc_id=document_id(text.encode()), source=source, format="txt",
                          size_bytes=len(text))


def _chunks(embedder: FakeEmbedder, text: str):  # type: ignore[no-untyped-def]
    from retrieval.types import ChunkRecord

    return [ChunkRecord(text=text)], embedder.embed_batch([text])


def test_unknown_words_are_those_no_chunk_holds(tmp_path: Path,
                                                fake_embedder: FakeEmbedder) -> None:
    coll = make_collection(tmp_path, fake_embedder)
    report = pipeline(coll, fake_embedder).run(
        [text_doc("a.txt", "The Team plan costs 11 pounds; P1 tickets get an answer in an hour."),
         text_doc("b.txt", "Israel and Cambyses enter; prices rise in the Business plan.")])
    words = ["Team", "Business", "P1", "P4", "Enterprise", "Isreal", "Camyses", "plans", "the"]
    # misspelt names of 5 or more letters are known (one edit away); P4 and Enterprise are not,
    # though "enter" and "rise" are indexed
    assert coll.unknown_words(words + ["enter", "rise"]) == ["P4", "Enterprise"]
    assert coll.delete_document(report.results[1].doc_id)
    assert coll.unknown_words(["Business", "Team"]) == ["Business"]  # deleted with its document
