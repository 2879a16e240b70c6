"""The docstore's own schema changes: a store made by an earlier release opens as it was."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from retrieval.docstore import Docstore

OLD_DOCUMENTS = """
CREATE TABLE documents (doc_id TEXT PRIMARY KEY, source TEXT NOT NULL UNIQUE,
    format TEXT NOT NULL, size_bytes INTEGER NOT NULL, metadata TEXT NOT NULL,
    warnings TEXT NOT NULL, n_chunks INTEGER NOT NULL, created_at TEXT NOT NULL);
"""


def test_a_store_from_before_page_counts_gets_them_for_its_pdfs(tmp_path: Path) -> None:
    path = tmp_path / "docs.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_DOCUMENTS)
    for doc_id, fmt, meta in (("p", "pdf", {"pages": 12}), ("t", "txt", {"pages": "ours"})):
        db.execute("INSERT INTO documents VALUES (?,?,?,?,?,?,?,?)",
                   (doc_id, f"{doc_id}.{fmt}", fmt, 10, json.dumps(meta), "[]", 1, "2026"))
    db.commit()
    db.close()
    store = Docstore(path)
    assert {d.source: d.pages for d in store.documents()} == {"p.pdf": 12, "t.txt": None}
    store.close()
    assert [d.pages for d in Docstore(path).documents()] == [12, None]  # opened again: unchanged
