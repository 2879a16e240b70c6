"""SQLite docstore: documents, chunks (text, page, metadata) and each chunk's embedding.

It is the source of truth of a collection: the FAISS index is rebuilt from it when they disagree,
so a crash between writing one and the other never loses a committed document. A document and all
its chunks are written in one transaction, so readers see either the whole document or none of it.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidSearch
from .types import ChunkRecord, DocumentRecord, SearchFilter

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    format TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    warnings TEXT NOT NULL,
    n_chunks INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    pages INTEGER
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id),
    ord INTEGER NOT NULL,
    text TEXT NOT NULL,
    page INTEGER,
    metadata TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', '0');
"""

_META_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Docstore:
    """One collection's SQLite file. Not thread-safe by itself: the Collection serialises access."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(SCHEMA)
        self._add_pages_column()

    def _add_pages_column(self) -> None:
        """A store made before documents had a page count gets the column, filled for its PDFs
        from the count their loader kept in the metadata."""
        def has_it() -> bool:
            return any(row[1] == "pages"
                       for row in self._db.execute("PRAGMA table_info(documents)"))
        if has_it():
            return
        with self._transaction() as db:
            if has_it():  # another process added it meanwhile
                return
            db.execute("ALTER TABLE documents ADD COLUMN pages INTEGER")
            db.execute("UPDATE documents SET pages = json_extract(metadata, '$.pages') "
                       "WHERE format = 'pdf'")

    def close(self) -> None:
        self._db.close()

    def revision(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='revision'").fetchone()
        return int(row[0])

    # -- writes ---------------------------------------------------------------------------------

    def put_documents(
        self, items: list[tuple[DocumentRecord, list[ChunkRecord], np.ndarray]]
    ) -> list[tuple[str, list[int], list[int], str | None]]:
        """Store documents in one transaction, each replacing an older version with its source.

        Returns, per document, (status, added chunk ids, removed chunk ids, replaced doc id).
        """
        with self._transaction() as db:
            out = [self._put(db, *item) for item in items]
            self._bump(db)
        return out

    def _put(self, db: sqlite3.Connection, doc: DocumentRecord, chunks: list[ChunkRecord],
             vectors: np.ndarray) -> tuple[str, list[int], list[int], str | None]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks for {len(vectors)} vectors")
        if db.execute("SELECT 1 FROM documents WHERE doc_id=?", (doc.doc_id,)).fetchone():
            return "unchanged", [], [], None
        old = db.execute("SELECT doc_id FROM documents WHERE source=?", (doc.source,)).fetchone()
        removed = self._delete(db, old[0]) if old else []
        db.execute(
            "INSERT INTO documents (doc_id, source, format, size_bytes, metadata, warnings, "
            "n_chunks, created_at, pages) VALUES (?,?,?,?,?,?,?,?,?)",
            (doc.doc_id, doc.source, doc.format, doc.size_bytes, json.dumps(doc.metadata),
             json.dumps(doc.warnings), len(chunks), datetime.now(UTC).isoformat(), doc.pages),
        )
        added = [self._insert_chunk(db, doc.doc_id, i, c, v)
                 for i, (c, v) in enumerate(zip(chunks, vectors, strict=True))]
        return ("replaced" if old else "added"), added, removed, (old[0] if old else None)

    def has_document(self, doc_id: str) -> bool:
        return self._db.execute(
            "SELECT 1 FROM documents WHERE doc_id=?", (doc_id,)).fetchone() is not None

    def delete_document(self, doc_id: str) -> list[int] | None:
        """Delete a document and its chunks; returns the removed chunk ids, or None if absent."""
        with self._transaction() as db:
            if not db.execute("SELECT 1 FROM documents WHERE doc_id=?", (doc_id,)).fetchone():
                return None
            removed = self._delete(db, doc_id)
            self._bump(db)
        return removed

    @staticmethod
    def _insert_chunk(db: sqlite3.Connection, doc_id: str, ord_: int, chunk: ChunkRecord,
                      vector: np.ndarray) -> int:
        cur = db.execute(
            "INSERT INTO chunks (doc_id, ord, text, page, metadata, embedding) VALUES (?,?,?,?,?,?)",
            (doc_id, ord_, chunk.text, chunk.page, json.dumps(chunk.metadata), vector.tobytes()),
        )
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    @staticmethod
    def _delete(db: sqlite3.Connection, doc_id: str) -> list[int]:
        ids = [r[0] for r in db.execute("SELECT id FROM chunks WHERE doc_id=?", (doc_id,))]
        db.execute("DELETE FROM chunks WHERE doc_id=?", (doc_id,))
        db.execute("DELETE FROM documents WHERE doc_id=?", (doc_id,))
        return ids

    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='revision'")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # -- reads ----------------------------------------------------------------------------------

    def chunk_ids(self) -> np.ndarray:
        rows = self._db.execute("SELECT id FROM chunks").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def embeddings(self, ids: np.ndarray, dim: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) in batches, for rebuilding the index."""
        id_list = [int(i) for i in ids]
        for start in range(0, len(id_list), 2000):
            part = id_list[start:start + 2000]
            rows = self._db.execute(
                f"SELECT id, embedding FROM chunks WHERE id IN ({','.join('?' * len(part))})", part
            ).fetchall()
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, dim)
            yield np.array([r[0] for r in rows], dtype=np.int64), vecs

    def chunk_refs(self) -> list[tuple[int, str]]:
        return [(int(r[0]), str(r[1]))
                for r in self._db.execute("SELECT id, doc_id FROM chunks ORDER BY id")]

    def chunk_texts(self) -> tuple[np.ndarray, list[str]]:
        rows = self._db.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def chunks_by_id(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        rows = self._db.execute(
            "SELECT c.id, c.doc_id, d.source, c.page, c.text, c.metadata, d.metadata "
            "FROM chunks c JOIN documents d ON d.doc_id = c.doc_id "
            f"WHERE c.id IN ({','.join('?' * len(ids))})", ids,
        ).fetchall()
        return {r[0]: {"doc_id": r[1], "source": r[2], "page": r[3], "text": r[4],
                       "metadata": {**json.loads(r[6]), **json.loads(r[5])}} for r in rows}

    def filtered_chunk_ids(self, flt: SearchFilter) -> np.ndarray:
        where, args = [], []
        if flt.source is not None:
            where.append("d.source = ?")
            args.append(flt.source)
        if flt.doc_id is not None:
            where.append("d.doc_id = ?")
            args.append(flt.doc_id)
        for key, value in flt.metadata.items():
            if not _META_KEY.match(key):
                raise InvalidSearch(f"metadata filter key {key!r} must match {_META_KEY.pattern}")
            path = f'$."{key}"'
            where.append("(json_extract(d.metadata, ?) = ? OR json_extract(c.metadata, ?) = ?)")
            args += [path, value, path, value]
        sql = "SELECT c.id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.execute(sql, args).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def documents(self, limit: int = 1000, offset: int = 0) -> list[DocumentRecord]:
        rows = self._db.execute(
            "SELECT * FROM documents ORDER BY source LIMIT ? OFFSET ?", (limit, offset)
        ).fetchall()
        return [_doc(r) for r in rows]

    def document(self, doc_id: str) -> DocumentRecord | None:
        row = self._db.execute("SELECT * FROM documents WHERE doc_id=?", (doc_id,)).fetchone()
        return _doc(row) if row else None

    def counts(self) -> tuple[int, int]:
        docs = self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return int(docs), int(chunks)


def _doc(row: tuple[Any, ...]) -> DocumentRecord:
    return DocumentRecord(doc_id=row[0], source=row[1], format=row[2], size_bytes=row[3],
                          metadata=json.loads(row[4]), warnings=json.loads(row[5]),
                          n_chunks=row[6], created_at=row[7], pages=row[8])


class _Transaction:
    """`BEGIN IMMEDIATE` … `COMMIT`, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
