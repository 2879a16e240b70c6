"""kill -9 during an ingest: on reopen, index and docstore agree and no document is partial."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval.catalog import Catalog
from retrieval.types import SearchFilter

REPO = Path(__file__).resolve().parents[2]

WORKER = """
import sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from tests.fakes import FakeEmbedder
from tests.helpers import make_collection, pipeline, text_doc

class SlowEmbedder(FakeEmbedder):
    def embed_batch(self, texts):
        time.sleep(0.01)
        return super().embed_batch(texts)

emb = SlowEmbedder()
coll = make_collection(Path({root!r}), emb, chunk_size=16, chunk_overlap=2)
docs = [text_doc(f"doc{{i:04d}}.txt", " ".join(f"word{{i}} token{{j}}" for j in range(40)))
        for i in range(3000)]
print("ready", flush=True)
pipeline(coll, emb, batch_chunks=8).run(docs)
print("finished", flush=True)
"""


def _committed(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@pytest.mark.parametrize("min_docs", [1, 40, 150])
def test_kill_9_during_ingest_leaves_store_consistent(tmp_path: Path, min_docs: int) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WORKER.format(repo=str(REPO),
                                                                 root=str(tmp_path))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = tmp_path / "collections" / "kb" / "docstore.sqlite"
    deadline = time.monotonic() + 60
    while _committed(db) < min_docs and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"worker ended before the kill: {proc.communicate()[1][-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    coll = Catalog(tmp_path).get("kb")
    docs = coll.documents(limit=10_000)
    assert len(docs) >= min_docs
    index_ids = sorted(coll.index.ids().tolist())
    assert index_ids == sorted(coll.docstore.chunk_ids().tolist())
    for doc in docs:
        assert len(coll.docstore.filtered_chunk_ids(SearchFilter(doc_id=doc.doc_id))) \
            == doc.n_chunks > 1, f"{doc.source} is partial"
