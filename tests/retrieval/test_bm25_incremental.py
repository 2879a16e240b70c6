"""The BM25 index updated in place: any sequence of adds and removes (and saves and loads) scores
exactly as a fresh build of the same chunks, and its file survives crashes and interrupted saves."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import retrieval.bm25 as bm25_module
from retrieval.bm25 import BM25Index, tokenize
from retrieval.catalog import Catalog
from retrieval.collection import BM25_FILE, Collection
from tests.fakes import FakeEmbedder
from tests.helpers import make_collection, pipeline, text_doc

WORDS = ("pump valve water zone report keyfob token meter river grid alpha beta gamma delta "
         "storm drain filter sensor tank pressure leak flow cells glasses bus").split()


def _text(rng: np.random.Generator) -> str:
    n = int(rng.integers(0, 30))  # some chunks have no words at all
    return " ".join(rng.choice(WORDS, size=n, p=_zipf()).tolist())


def _zipf() -> np.ndarray:
    w = 1 / np.arange(1, len(WORDS) + 1)
    return w / w.sum()


def _reference(texts: dict[int, str], query: str, k1: float = 0.9, b: float = 0.4
               ) -> dict[int, float]:
    """Okapi BM25 straight from its definition, one chunk at a time."""
    docs = {i: Counter(tokenize(t)) for i, t in texts.items()}
    n = len(docs)
    avgdl = sum(sum(c.values()) for c in docs.values()) / n
    out = {}
    for i, counts in docs.items():
        dl, score = sum(counts.values()), 0.0
        for term in tokenize(query):
            df = sum(1 for c in docs.values() if term in c)
            tf = counts.get(term, 0)
            if tf:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / (avgdl or 1.0)))
        out[i] = score
    return out


def _scores(index: BM25Index, query: str) -> dict[int, float]:
    scores = index.score_all(query)
    return index.lookup(scores, index.live_ids().tolist())


def _fresh(texts: dict[int, str]) -> BM25Index:
    fresh = BM25Index()
    ids = sorted(texts)
    fresh.build(np.array(ids, dtype=np.int64), [texts[i] for i in ids])
    return fresh


QUERIES = ["pump water", "keyfob token token", "river", "glasses bus cells", "zebra", "storm drain leak"]


@pytest.mark.parametrize("tail_rows", [3, 40, 2048])
def test_random_adds_and_removes_score_exactly_as_a_fresh_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail_rows: int) -> None:
    monkeypatch.setattr(bm25_module, "TAIL_ROWS", tail_rows)  # rebuild and compaction points
    rng = np.random.default_rng(tail_rows)
    index, texts, next_id = BM25Index(), {}, 1
    for step in range(60):
        if texts and rng.random() < 0.4:
            gone = rng.choice(sorted(texts), size=min(len(texts), int(rng.integers(1, 12))),
                              replace=False)
            assert index.remove(np.concatenate([gone, [10**9]])) == len(gone)
            for i in gone.tolist():
                del texts[i]
        else:
            new = {next_id + j: _text(rng) for j in range(int(rng.integers(1, 15)))}
            if texts and rng.random() < 0.3:  # re-adding an id replaces its text
                new[int(rng.choice(sorted(texts)))] = _text(rng)
            next_id += 15
            index.add(np.array(list(new), dtype=np.int64), list(new.values()))
            texts.update(new)
        if step % 17 == 16:
            index.save(tmp_path / "bm25.npz")
            index = BM25Index.load(tmp_path / "bm25.npz")
        assert sorted(index.live_ids().tolist()) == sorted(texts)
        if not texts:
            continue
        fresh = _fresh(texts)
        for query in QUERIES:
            got, want = _scores(index, query), _scores(fresh, query)
            assert got == want, f"step {step}, query {query!r}: not the fresh build's scores"
            reference = _reference(texts, query)
            assert got.keys() == reference.keys()
            assert all(math.isclose(got[i], reference[i], rel_tol=1e-9, abs_tol=1e-12)
                       for i in got)
            assert [index.top(index.score_all(query), 5)[1].tolist()] == \
                [fresh.top(fresh.score_all(query), 5)[1].tolist()]


def test_top_breaks_ties_by_chunk_id_and_honours_the_allowed_ids() -> None:
    index = BM25Index()
    index.build(np.array([30, 10, 20, 40]), ["pump", "pump", "pump", "valve"])
    scores, ids = index.search("pump", 2)
    assert ids.tolist() == [10, 20] and scores[0] == scores[1] > 0
    assert index.search("pump", 5, allowed_ids=np.array([30, 40]))[1].tolist() == [30]
    assert index.search("pump", 5, allowed_ids=np.array([], dtype=np.int64))[1].tolist() == []


def test_load_refuses_other_settings_and_inconsistent_files(tmp_path: Path) -> None:
    index = BM25Index()
    index.build(np.array([1, 2]), ["pump water", "valve"])
    path = tmp_path / "bm25.npz"
    index.save(path)
    assert _scores(BM25Index.load(path), "pump") == _scores(index, "pump")
    with pytest.raises(ValueError, match="settings"):
        BM25Index.load(path, k1=1.2)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["cols"] = arrays["cols"] + 100
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ValueError, match="consistent"):
        BM25Index.load(path)


def _keyword(coll: Collection, emb: FakeEmbedder, query: str, k: int = 3) -> list[str]:
    hits = coll.search(emb.embed_batch([query]), k, query_texts=[query], mode="keyword")[0]
    return [h.source for h in hits]


def _docs(n: int, start: int = 0) -> list:  # type: ignore[type-arg]
    return [text_doc(f"d{i}.txt", f"water report for zone {i} with {WORDS[i % len(WORDS)]}")
            for i in range(start, start + n)]


def _no_full_read(coll: Collection, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise AssertionError("the BM25 index was rebuilt from every text")
    monkeypatch.setattr(coll.docstore, "chunk_texts", refuse)


def test_commits_and_deletes_update_the_loaded_index_in_place(
        tmp_path: Path, fake_embedder: FakeEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    coll = make_collection(tmp_path, fake_embedder)
    report = pipeline(coll, fake_embedder).run(_docs(30))
    assert _keyword(coll, fake_embedder, "zone 7")[0] == "d7.txt"
    _no_full_read(coll, monkeypatch)
    pipeline(coll, fake_embedder).run([text_doc("k.txt", "operators use a turnstile")])
    assert _keyword(coll, fake_embedder, "turnstile") == ["k.txt"]
    assert coll.delete_document(report.results[7].doc_id)
    assert "d7.txt" not in _keyword(coll, fake_embedder, "zone 7", k=30)
    _matches_a_fresh_build(coll)


def test_the_saved_index_is_reconciled_by_id_after_a_crash(
        tmp_path: Path, fake_embedder: FakeEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Crash after the docstore commit, before the BM25 file was saved: the next process reads
    only the missing chunks' texts."""
    coll = make_collection(tmp_path, fake_embedder)
    pipeline(coll, fake_embedder).run(_docs(30))
    coll.settle_keyword_index()  # as an ingest ends: the BM25 file is saved
    assert (coll.root / BM25_FILE).exists()
    other = Catalog(tmp_path).get("kb")  # as another process: commits, never saves
    other.commit([(_record("late.txt", "a turnstile by the gate"),
                   *_chunks(fake_embedder, "a turnstile by the gate"))])
    other.docstore.close()
    reopened = Catalog(tmp_path).get("kb")
    _no_full_read(reopened, monkeypatch)
    assert _keyword(reopened, fake_embedder, "turnstile") == ["late.txt"]
    _matches_a_fresh_build(reopened)


def _matches_a_fresh_build(coll: Collection) -> None:
    index = coll._keyword_index()
    rows = coll.docstore.chunks_by_id(coll.docstore.chunk_ids().tolist())
    texts = {i: r["text"] for i, r in rows.items()}
    assert sorted(index.live_ids().tolist()) == sorted(texts)
    for query in ("water zone", "turnstile"):
        assert _scores(index, query) == _scores(_fresh(texts), query)


def test_an_orphan_in_the_saved_index_is_dropped(tmp_path: Path,
                                                 fake_embedder: FakeEmbedder) -> None:
    """Crash after the BM25 file was saved with a chunk the docstore never committed."""
    coll = make_collection(tmp_path, fake_embedder)
    pipeline(coll, fake_embedder).run(_docs(5))
    coll.settle_keyword_index()
    path = coll.root / BM25_FILE
    orphan = BM25Index.load(path)
    orphan.add(np.array([999_999]), ["turnstile never committed"])
    orphan.save(path)
    coll.close()
    reopened = Catalog(tmp_path).get("kb")
    assert _keyword(reopened, fake_embedder, "turnstile") == []
    assert 999_999 not in reopened._keyword_index().live_ids()


def test_an_interrupted_save_leaves_the_previous_file(
        tmp_path: Path, fake_embedder: FakeEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    coll = make_collection(tmp_path, fake_embedder)
    pipeline(coll, fake_embedder).run(_docs(5))
    coll.settle_keyword_index()
    before = (coll.root / BM25_FILE).read_bytes()
    real_savez = np.savez

    def dies_half_way(fh, **arrays):  # type: ignore[no-untyped-def]
        real_savez(fh, **arrays)
        fh.truncate(fh.tell() // 2)
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(bm25_module.np, "savez", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        pipeline(coll, fake_embedder).run([text_doc("k.txt", "operators use a turnstile")])
    monkeypatch.undo()
    assert (coll.root / BM25_FILE).read_bytes() == before
    coll.docstore.close()
    reopened = Catalog(tmp_path).get("kb")
    assert _keyword(reopened, fake_embedder, "turnstile") == ["k.txt"]
    _matches_a_fresh_build(reopened)


@pytest.mark.parametrize("damage", ["garbage", "empty", "other settings"])
def test_an_unreadable_index_file_is_rebuilt(tmp_path: Path, fake_embedder: FakeEmbedder,
                                             monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    coll = make_collection(tmp_path, fake_embedder)
    pipeline(coll, fake_embedder).run(_docs(5))
    coll.settle_keyword_index()
    coll.close()
    path = coll.root / BM25_FILE
    if damage == "other settings":
        monkeypatch.setattr(bm25_module, "FORMAT", bm25_module.FORMAT + 1)
    else:
        path.write_bytes(b"" if damage == "empty" else b"garbage")
    reopened = Catalog(tmp_path).get("kb")
    assert _keyword(reopened, fake_embedder, "zone 3")[0] == "d3.txt"
    _matches_a_fresh_build(reopened)
    assert BM25Index.load(path).live_ids().size == 5, "the rebuilt index was saved"


def _record(source: str, text: str):  # type: ignore[no-untyped-def]
    from ingest.pipeline import document_id
    from retrieval.types import DocumentRecord

    return DocumentRecord(doc_id=document_id(text.encode()), source=source, format="txt",
                          size_bytes=len(text))


def _chunks(emb: FakeEmbedder, text: str):  # type: ignore[no-untyped-def]
    from retrieval.types import ChunkRecord

    return [ChunkRecord(text=text)], emb.embed_batch([text])
