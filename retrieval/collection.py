"""A collection: one docstore (the truth) and one vector index (a cache of the docstore's vectors).

Write order: the docstore commits a whole document in one transaction; the index is then updated in
memory and saved (temp file, fsync, rename) at `flush()`. On open, and whenever another process has
committed (the docstore's revision moved), the index is reconciled with the docstore: extra ids are
removed and missing ones re-added from the stored embeddings. So after a kill -9 at any moment,
every document is fully present or fully absent, in both. The BM25 index is a cache of the same
kind: updated in place with each commit, saved beside the vector index, and reconciled by chunk id
(only the missing chunks' texts are read) when the docstore moved.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .bm25 import BM25Index, is_phrase, phrase_first
from .docstore import Docstore
from .errors import InvalidCollectionConfig
from .fusion import convex_fusion
from .index import INDEXES, VectorIndex, backend
from .types import ChunkRecord, CommitOutcome, DocumentRecord, Hit, SearchFilter

SEARCH_MODES = ("hybrid", "dense", "keyword")
BM25_FILE = "bm25.npz"
HYBRID_ALPHA = 0.7  # weight of the dense score in hybrid fusion; tuned on SciFact train (bench.tune_hybrid)


@dataclass
class CollectionConfig:
    """Settings fixed when a collection is created."""

    name: str
    embedder: str = field(metadata={"help": "embedder the vectors were made with"})
    dim: int = field(metadata={"help": "embedding dimension"})
    chunk_size: int = field(default=256, metadata={"help": "chunk size in embedder tokens"})
    chunk_overlap: int = field(default=32, metadata={"help": "overlap between chunks, tokens"})
    index_type: str = field(default="flat", metadata={
        "help": "the vector index: " + "; ".join(f"{n}: {b.about}" for n, b in INDEXES.items())})
    created_at: str = ""

    def __post_init__(self) -> None:
        if self.chunk_size < 16 or self.chunk_size > 8192:
            raise InvalidCollectionConfig(
                f"chunk_size {self.chunk_size!r} must be between 16 and 8192 tokens")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise InvalidCollectionConfig(
                f"chunk_overlap {self.chunk_overlap!r} must be >= 0 and < chunk_size "
                f"{self.chunk_size!r}"
            )
        backend(self.index_type)  # UnknownIndex, naming the known ones

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


class Collection:
    """Thread-safe handle on one collection directory."""

    def __init__(self, root: Path, config: CollectionConfig, use_gpu: bool | None = None) -> None:
        self.root = root
        self.config = config
        self._lock = threading.RLock()
        self._use_gpu = use_gpu
        self.docstore = Docstore(root / "docstore.sqlite")
        self._backend = backend(config.index_type)
        self._index_path = root / self._backend.file_name
        self.index = self._load_index()
        self._dirty = False
        self._last_save = time.monotonic()
        self._revision = -1
        self._bm25_path = root / BM25_FILE
        self._bm25: BM25Index | None = None  # loaded at the first keyword search
        self._bm25_dirty = False
        self.reconcile()

    @property
    def name(self) -> str:
        return self.config.name

    def _load_index(self) -> VectorIndex:
        if self._index_path.exists():
            try:
                return self._backend.load(self._index_path, self.config.dim, use_gpu=self._use_gpu)
            except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt from the docstore
                pass
        return self._backend.new(self.config.dim, use_gpu=self._use_gpu)

    # -- consistency ----------------------------------------------------------------------------

    def reconcile(self) -> tuple[int, int]:
        """Make the index hold exactly the docstore's chunks. Returns (added, removed)."""
        with self._lock:
            revision = self.docstore.revision()
            truth, cached = self.docstore.chunk_ids(), self.index.ids()
            extra = np.setdiff1d(cached, truth, assume_unique=True)
            missing = np.setdiff1d(truth, cached, assume_unique=True)
            self.index.remove(extra)
            for ids, vecs in self.docstore.embeddings(missing, self.config.dim):
                self.index.add(ids, vecs)
            self._revision = revision
            if len(extra) or len(missing):
                self._dirty = True
            if self._bm25 is not None:
                self._reconcile_bm25(self._bm25, truth)
            self.flush()
            return len(missing), len(extra)

    def _reconcile_bm25(self, bm25: BM25Index, truth: np.ndarray) -> None:
        """Make the BM25 index hold exactly the docstore's chunks `truth`, reading the texts of
        the missing ones only."""
        cached = bm25.live_ids()
        extra = np.setdiff1d(cached, truth)
        missing = np.setdiff1d(truth, cached)
        if len(missing) > len(truth) // 2:  # (re)building: one read of every text
            ids, texts = self.docstore.chunk_texts()
            keep = np.isin(ids, missing)
            ids, texts = ids[keep], [t for t, k in zip(texts, keep, strict=True) if k]
        else:
            rows = {i: r["text"] for start in range(0, len(missing), 2000)
                    for i, r in self.docstore.chunks_by_id(
                        missing[start:start + 2000].tolist()).items()}
            ids = np.array(sorted(rows), dtype=np.int64)
            texts = [rows[i] for i in ids.tolist()]
        if bm25.remove(extra) or len(ids):
            bm25.add(ids, texts)
            self._bm25_dirty = True

    def _refresh_if_changed(self) -> None:
        if self.docstore.revision() != self._revision:
            self.reconcile()

    def flush(self) -> None:
        """Save the index if it changed since the last save."""
        with self._lock:
            if self._dirty:
                self.index.save(self._index_path)
                self._dirty = False
                self._last_save = time.monotonic()
            if self._bm25 is not None and self._bm25_dirty:
                self._bm25.save(self._bm25_path)
                self._bm25_dirty = False
                self._last_save = time.monotonic()

    def flush_if_stale(self, max_age_s: float = 30.0) -> None:
        if (self._dirty or self._bm25_dirty) and time.monotonic() - self._last_save > max_age_s:
            self.flush()

    # -- writes ---------------------------------------------------------------------------------

    def commit(self, items: list[tuple[DocumentRecord, list[ChunkRecord], np.ndarray]]
               ) -> list[CommitOutcome]:
        """Commit documents (each with its chunks and their vectors) in one transaction."""
        with self._lock:
            self._refresh_if_changed()
            results = self.docstore.put_documents(items)
            for (_, chunks, vectors), (status, added, removed, _) in zip(items, results,
                                                                          strict=True):
                if status != "unchanged":
                    self.index.remove(np.array(removed, dtype=np.int64))
                    self.index.add(np.array(added, dtype=np.int64), vectors)
                    self._dirty = True
                    if self._bm25 is not None:
                        self._bm25.remove(np.array(removed, dtype=np.int64))
                        self._bm25.add(np.array(added, dtype=np.int64), [c.text for c in chunks])
                        self._bm25_dirty = True
            self._revision = self.docstore.revision()
        return [CommitOutcome(status=status, doc_id=doc.doc_id, chunks_added=len(added),
                              replaced_doc_id=old)
                for (doc, _, _), (status, added, _, old) in zip(items, results, strict=True)]

    def has_document(self, doc_id: str) -> bool:
        with self._lock:
            return self.docstore.has_document(doc_id)

    def delete_document(self, doc_id: str) -> bool:
        with self._lock:
            self._refresh_if_changed()
            removed = self.docstore.delete_document(doc_id)
            if removed is None:
                return False
            self.index.remove(np.array(removed, dtype=np.int64))
            if self._bm25 is not None:
                self._bm25.remove(np.array(removed, dtype=np.int64))
                self._bm25_dirty = True
            self._revision = self.docstore.revision()
            self._dirty = True
            self.flush()
        return True

    # -- reads ----------------------------------------------------------------------------------

    def search(self, query_vectors: np.ndarray, k: int, flt: SearchFilter | None = None,
               query_texts: list[str] | None = None, mode: str = "dense",
               alpha: float = HYBRID_ALPHA) -> list[list[Hit]]:
        """Top-k hits per query. `dense` ranks by cosine similarity; `keyword` by BM25; `hybrid`
        by a convex fusion of both scores (weight `alpha` on dense). A hit's score is always its
        cosine similarity to the query, so thresholds mean the same in every mode."""
        if not 1 <= k <= 1000:
            raise ValueError(f"k {k!r} must be between 1 and 1000")
        if mode not in SEARCH_MODES:
            raise ValueError(f"search mode {mode!r} must be one of {', '.join(SEARCH_MODES)}")
        if mode != "dense" and (query_texts is None or len(query_texts) != len(query_vectors)):
            raise ValueError(f"search mode {mode!r} needs the query texts")
        with self._lock:
            self._refresh_if_changed()
            allowed = None if flt is None or flt.is_empty() else self.docstore.filtered_chunk_ids(flt)
            depth = k if mode == "dense" else max(4 * k, 50)
            _, ids = self.index.search(query_vectors, depth, allowed_ids=allowed)
            rankings = [[int(i) for i in row if i >= 0] for row in ids]
            cosine: list[dict[int, float]] = [{} for _ in rankings]
            if mode != "dense":
                rankings, cosine = self._keyword_rankings(query_vectors, query_texts or [],
                                                          rankings, depth, allowed, mode, alpha)
            rankings = [r[:k] for r in rankings]
            wanted = sorted({i for r in rankings for i in r})
            rows = self.docstore.chunks_by_id(wanted)
            unscored = sorted({i for r, c in zip(rankings, cosine, strict=True) for i in r
                               if i not in c})
            if unscored:
                for known, more in zip(cosine, self._cosines(query_vectors, unscored), strict=True):
                    known.update(more)
        return [[Hit(chunk_id=i, score=cosine[q].get(i, 0.0), **rows[i]) for i in r if i in rows]
                for q, r in enumerate(rankings)]

    def _keyword_rankings(self, queries: np.ndarray, texts: list[str], dense: list[list[int]],
                          depth: int, allowed: np.ndarray | None, mode: str, alpha: float
                          ) -> tuple[list[list[int]], list[dict[int, float]]]:
        """Each query's ranking by BM25 (`keyword`) or fused (`hybrid`), and the cosines it
        computed on the way (those of the fused candidates)."""
        bm25 = self._keyword_index()
        out: list[list[int]] = []
        cosines: list[dict[int, float]] = []
        for q, (text, dn) in enumerate(zip(texts, dense, strict=True)):
            all_scores = bm25.score_all(text)
            kw_ids = bm25.top(all_scores, depth, allowed)[1].tolist()
            if mode == "keyword":
                out.append(kw_ids)
                cosines.append({})
                continue
            candidates = sorted(set(dn) | set(kw_ids))
            cos = self._cosines(queries[q:q + 1], candidates)[0]
            kw = bm25.lookup(all_scores, candidates)
            fused = [i for i, _ in convex_fusion(cos, kw, alpha)]
            if is_phrase(text):
                # only chunks holding every word of the phrase can hold it verbatim
                rows = self.docstore.chunks_by_id(bm25.may_contain(text, fused))
                fused = phrase_first(text, fused, {i: r["text"] for i, r in rows.items()})
            out.append(fused)
            cosines.append(cos)
        return out, cosines

    def _cosines(self, queries: np.ndarray, ids: list[int]) -> list[dict[int, float]]:
        vecs = {int(i): v for got, block in self.docstore.embeddings(np.array(ids), self.config.dim)
                for i, v in zip(got, block, strict=True)}
        order = list(vecs)
        if not order:
            return [{} for _ in queries]
        sims = np.asarray(queries, dtype=np.float32) @ np.stack([vecs[i] for i in order]).T
        return [dict(zip(order, map(float, row), strict=True)) for row in sims]

    def settle_keyword_index(self) -> None:
        """Bring the BM25 index up to date with the docstore and save it: called when an ingest
        finishes, so what it added is searchable by keyword as soon as it says it succeeded, and
        the next process to open the collection reads only what changed after."""
        with self._lock:
            self._refresh_if_changed()
            self._keyword_index()
            self.flush()

    def _keyword_index(self) -> BM25Index:
        """The BM25 index: loaded from its file (or built from the docstore when the file is
        missing or unreadable) at first use, then kept in step with every change."""
        if self._bm25 is None:
            bm25 = BM25Index()
            if self._bm25_path.exists():
                try:
                    bm25 = BM25Index.load(self._bm25_path)
                except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt from the docstore
                    pass
            self._bm25 = bm25
            self._reconcile_bm25(bm25, self.docstore.chunk_ids())
            self.flush()
        return self._bm25

    def unknown_words(self, words: list[str]) -> list[str]:
        """Those of `words` that no chunk of the collection holds (`BM25Index.unknown`)."""
        if not words:
            return []
        with self._lock:
            self._refresh_if_changed()
            return self._keyword_index().unknown(words)

    def chunk_refs(self) -> list[tuple[int, str]]:
        """(chunk id, doc id) of every chunk, in id order."""
        with self._lock:
            return self.docstore.chunk_refs()

    def chunks(self, ids: list[int]) -> list[Hit]:
        """The chunks with these ids, in the order asked (unknown ids skipped), scored 0."""
        with self._lock:
            rows = self.docstore.chunks_by_id([int(i) for i in ids])
        return [Hit(chunk_id=int(i), score=0.0, **rows[int(i)]) for i in ids if int(i) in rows]

    def documents(self, limit: int = 1000, offset: int = 0) -> list[DocumentRecord]:
        with self._lock:
            return self.docstore.documents(limit, offset)

    def document(self, doc_id: str) -> DocumentRecord | None:
        with self._lock:
            return self.docstore.document(doc_id)

    def stats(self) -> dict[str, int]:
        with self._lock:
            docs, chunks = self.docstore.counts()
        return {"documents": docs, "chunks": chunks}

    def close(self) -> None:
        with self._lock:
            self.flush()
            self.docstore.close()
