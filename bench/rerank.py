"""The search reranker, measured: SciFact test nDCG@10 with and without it, the latency it adds to an
in-process search, and kb_dev hit@5 with and without it.

- SciFact: each test query's first stage (hybrid, the top 100 chunks, a document at its best chunk)
  against the same list with its top `top_n` reordered by the reranker mixed with weight `weight`
  (both tuned on held-out train queries by `ragtune rerank train` and read from the model's
  `reranker.json`; also shown: the reranker's order alone, weight 1). Test is never tuned on.
- latency: p50/p95 of `Corpus.search` (k 10, hybrid) over the first `--latency-queries` test
  queries, with and without the stage, after a warm-up of each.
- kb_dev: its answerable questions, hit@5 = the gold document among the top 5 hits (evaluate only:
  nothing is fitted on kb_dev). Its documents are ingested into `--kb-collection` when missing.

    python -m bench.rerank --reranker NAME|DIR [--data-dir /tmp/rt-rerank] [--collection scifact]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from api.corpus import Corpus
from api.settings import Settings
from generation.evaluation import load_questions
from retrieval.evaluation import beir_doc_key, load_qrels, load_queries
from retrieval.metrics import dedupe_ranking, mrr_at_k, ndcg_at_k, recall_at_k
from retrieval.rerank import CrossEncoderReranker, rerank
from retrieval.types import Hit

from .common import SHARED, percentiles, require, write


def _metrics(hits: list[Hit], rel: dict[str, int]) -> dict[str, float]:
    ranked = dedupe_ranking([beir_doc_key(h) for h in hits])
    return {"ndcg@10": ndcg_at_k(ranked, rel, 10), "recall@10": recall_at_k(ranked, rel, 10),
            "mrr@10": mrr_at_k(ranked, rel, 10)}


def scifact(svc: Corpus, collection: str, reranker: CrossEncoderReranker, top_n: int,
            weight: float) -> dict[str, Any]:
    qrels = load_qrels(SHARED / "scifact" / "qrels" / "test.tsv")
    queries = {q: t for q, t in load_queries(SHARED / "scifact" / "queries.jsonl").items()
               if q in qrels}
    systems: dict[str, list[dict[str, float]]] = {"first_stage": [], "reranked": [],
                                                  "reranker_alone": []}
    for qid, text in queries.items():
        hits = svc.search(collection, text, 100, mode="hybrid", rerank=False)
        head, tail = hits[:top_n], hits[top_n:]
        scores = reranker.score(text, [h.text for h in head])
        systems["first_stage"].append(_metrics(hits, qrels[qid]))
        systems["reranked"].append(_metrics(rerank(head, scores, weight) + tail, qrels[qid]))
        systems["reranker_alone"].append(_metrics(rerank(head, scores, 1.0) + tail, qrels[qid]))
    return {"queries": len(queries), "top_n": top_n, "weight": weight,
            **{name: {m: round(statistics.fmean(r[m] for r in rows), 4) for m in rows[0]}
               for name, rows in systems.items()}}


def latency(svc: Corpus, collection: str, texts: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, flag in (("without", False), ("with", True)):
        svc.search(collection, "warm up", 10, rerank=flag)
        samples = []
        for text in texts:
            start = time.perf_counter()
            svc.search(collection, text, 10, rerank=flag)
            samples.append(time.perf_counter() - start)
        out[label] = {k: round(v, 1) if isinstance(v, float) else v
                      for k, v in percentiles(samples).items()}
    out["added_p50_ms"] = round(out["with"]["p50_ms"] - out["without"]["p50_ms"], 1)
    return out


def kb_hits(svc: Corpus, collection: str, kb: Path) -> dict[str, Any]:
    if not svc.catalog.exists(collection):
        svc.create_collection(collection)
        svc.ingest_paths(collection, sorted((kb / "docs").iterdir()))
    gold = [q for q in load_questions(kb / "questions.jsonl") if q.answerable and q.doc]
    out: dict[str, Any] = {"questions": len(gold)}
    for label, flag in (("without", False), ("with", True)):
        hit = [any(h.source == q.doc or h.source.endswith("/" + str(q.doc))
                   for h in svc.search(collection, q.question, 5, rerank=flag)) for q in gold]
        out[f"hit@5_{label}"] = round(sum(hit) / len(hit), 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reranker", required=True, help="a name under <data_dir>/rerankers or a dir")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/rt-rerank"))
    p.add_argument("--collection", default="scifact", help="the SciFact corpus, ingested")
    p.add_argument("--kb-collection", default="kbdev")
    p.add_argument("--kb", type=Path, default=SHARED / "kb_dev")
    p.add_argument("--top-n", type=int, help="default: the model's tuned top_n, else 30")
    p.add_argument("--latency-queries", type=int, default=50)
    args = p.parse_args()
    require(SHARED / "scifact" / "qrels" / "test.tsv", "the SciFact test qrels")
    settings = Settings(data_dir=args.data_dir, reranker=args.reranker)
    reranker_dir = settings.reranker_dir()
    assert reranker_dir is not None
    record = CrossEncoderReranker(reranker_dir).record()
    top_n = args.top_n or int(record.get("top_n", 30))
    svc = Corpus(settings.model_copy(update={"rerank_top_n": top_n}))
    reranker = svc.reranker()
    assert isinstance(reranker, CrossEncoderReranker)
    weight = reranker.weight()
    result: dict[str, Any] = {"reranker": str(reranker_dir), "record": {
        k: record.get(k) for k in ("top_n", "weight", "dev_ndcg10", "dev_ndcg10_first_stage",
                                   "train_seconds", "pairs", "pair_kinds", "training")}}
    result["scifact_test"] = scifact(svc, args.collection, reranker, top_n, weight)
    print(f"SciFact test nDCG@10: first stage {result['scifact_test']['first_stage']['ndcg@10']}, "
          f"reranked {result['scifact_test']['reranked']['ndcg@10']} (top {top_n}, weight "
          f"{weight}), reranker alone {result['scifact_test']['reranker_alone']['ndcg@10']}")
    queries = list(load_queries(SHARED / "scifact" / "queries.jsonl").items())
    test = load_qrels(SHARED / "scifact" / "qrels" / "test.tsv")
    texts = [t for q, t in queries if q in test][:args.latency_queries]
    result["latency_in_process"] = latency(svc, args.collection, texts)
    print(f"search p50 {result['latency_in_process']['without']['p50_ms']} ms -> "
          f"{result['latency_in_process']['with']['p50_ms']} ms with the reranker")
    if (args.kb / "questions.jsonl").exists():
        result["kb_dev"] = kb_hits(svc, args.kb_collection, args.kb)
        print(f"kb_dev hit@5: {result['kb_dev']['hit@5_without']} without, "
              f"{result['kb_dev']['hit@5_with']} with")
    write("rerank", result)
    svc.close()


if __name__ == "__main__":
    main()
