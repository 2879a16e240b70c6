"""Retrieval evaluation on BEIR-format data: queries, qrels, and a run built from a collection.

Chunk hits are mapped back to documents (a document ranks at its best chunk), so the evaluation
uses the real ingest path: same chunking, same index.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from statistics import fmean

from .collection import HYBRID_ALPHA, Collection
from .embedder import Embedder
from .metrics import dedupe_ranking, mrr_at_k, ndcg_at_k, recall_at_k
from .types import Hit

Qrels = dict[str, dict[str, int]]


def load_queries(path: Path) -> dict[str, str]:
    out = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                rec = json.loads(line)
                if "_id" not in rec or "text" not in rec:
                    raise ValueError(f"{path}:{n}: a query needs '_id' and 'text'")
                out[str(rec["_id"])] = rec["text"]
    return out


def load_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if n == 1 and not parts[-1].lstrip("-").isdigit():
                continue  # header
            if len(parts) != 3:
                raise ValueError(f"{path}:{n}: expected 'query-id<TAB>corpus-id<TAB>score'")
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


def beir_doc_key(hit: Hit) -> str:
    """The BEIR corpus id of a hit ingested from a JSONL corpus."""
    return str(hit.metadata.get("id", hit.source))


def run_queries(collection: Collection, embedder: Embedder, queries: dict[str, str],
                depth: int = 100, key: Callable[[Hit], str] = beir_doc_key,
                batch: int = 256, mode: str = "dense",
                alpha: float = HYBRID_ALPHA) -> dict[str, list[str]]:
    """Document rankings per query id, from the top `depth` chunks."""
    ids = list(queries)
    run: dict[str, list[str]] = {}
    for start in range(0, len(ids), batch):
        part = ids[start:start + batch]
        vecs = embedder.embed_batch([queries[q] for q in part])
        texts = [queries[q] for q in part]
        results = collection.search(vecs, depth, query_texts=texts, mode=mode, alpha=alpha)
        for qid, hits in zip(part, results, strict=True):
            run[qid] = dedupe_ranking([key(h) for h in hits])
    return run


def score_run(run: dict[str, list[str]], qrels: Qrels) -> tuple[dict[str, float],
                                                                 dict[str, dict[str, float]]]:
    """Mean metrics over the queries in qrels, and per-query metrics."""
    per_query = {}
    for qid, rel in qrels.items():
        ranked = run.get(qid, [])
        per_query[qid] = {"ndcg@10": ndcg_at_k(ranked, rel, 10),
                          "recall@10": recall_at_k(ranked, rel, 10),
                          "recall@100": recall_at_k(ranked, rel, 100),
                          "mrr@10": mrr_at_k(ranked, rel, 10)}
    names = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
    means = {m: fmean(q[m] for q in per_query.values()) if per_query else 0.0 for m in names}
    return means, per_query
