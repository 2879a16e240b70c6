"""Ingest SciFact (5,183 abstracts) end to end through the real pipeline; time per stage, each beside
this machine's bound measured in the same run (peak fp32 matmul GFLOP/s, copy bandwidth):

- embed (and chunks/s overall): the encoder's FLOPs per chunk (2 x non-embedding parameters per
  token plus attention, at the mean tokens per chunk) at peak FLOP/s.
- parse and chunk: the corpus text read once at peak bandwidth (a loose floor: the work is tokenising).
- commit: each chunk's text and its 384-d fp32 embedding written once at peak bandwidth.
- index_save: the index's vectors (chunks x dim x 4 bytes) copied once at peak bandwidth.
Ratios are bound / measured seconds (chunks/s: measured / bound).

A full run (no --docs, no --quick) also scores the collection it built on the SciFact test queries
(nDCG@10, dense and hybrid), so a faster embedding path is seen beside its quality. The embedder's
backend and batch size come from the environment like the server's (RAGTUNE_EMBED_BACKEND,
RAGTUNE_EMBED_BATCH_SIZE) and are recorded with the figures.

    python -m bench.ingest [--data-dir /tmp/ragtune-bench] [--quick | --docs N] [--no-ndcg]
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path
from typing import Any

from api.corpus import Corpus
from api.settings import Settings
from retrieval.evaluation import load_qrels, load_queries, run_queries, score_run

from . import bounds
from .common import SHARED, require, write


def first_docs(corpus: Path, out: Path, docs: int) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(corpus, "rt") as src:
        out.write_text("".join(line for _, line in zip(range(docs), src, strict=False)))
    return out


def stage_bounds(summary: dict[str, Any], text_bytes: int, chunks: int, dim: int, chunk_s: float,
                 bound: dict[str, float]) -> dict[str, dict[str, float]]:
    bw = bound["memory_bandwidth_gbs"] * 1e9
    floors = {"parse": text_bytes / bw, "chunk": text_bytes / bw, "embed": chunks * chunk_s,
              "commit": (text_bytes + chunks * dim * 4) / bw, "index_save": chunks * dim * 4 / bw}
    out = {}
    for stage, sec in summary["stage_seconds"].items():
        floor = floors.get(stage, 0.0)
        out[stage] = {"seconds": sec, "bound_s": round(floor, 6),
                      "ratio": round(floor / sec, 4) if sec else None}
    return out


def scifact_ndcg(svc: Corpus, collection: str, scifact: Path) -> dict[str, float]:
    """nDCG@10 on the SciFact test queries, dense and hybrid, from `collection` (the full corpus)."""
    qrels = load_qrels(scifact / "qrels" / "test.tsv")
    queries = {q: t for q, t in load_queries(scifact / "queries.jsonl").items() if q in qrels}
    coll = svc.collection(collection)
    return {mode: round(score_run(run_queries(coll, svc.embedder, queries, mode=mode),
                                  qrels)[0]["ndcg@10"], 4) for mode in ("dense", "hybrid")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-bench"))
    p.add_argument("--corpus", type=Path, default=SHARED / "scifact" / "corpus.jsonl.gz")
    p.add_argument("--collection", default="scifact")
    p.add_argument("--docs", type=int, help="first N documents only")
    p.add_argument("--quick", action="store_true", help="first 500 documents (ingest_quick.json)")
    p.add_argument("--no-ndcg", action="store_true", help="skip the SciFact test nDCG@10 of a full run")
    args = p.parse_args()
    require(args.corpus, "the SciFact corpus")
    docs = 500 if args.quick else args.docs
    corpus = args.corpus
    if docs:
        corpus = first_docs(args.corpus, args.data_dir.parent / f"scifact-{docs}.jsonl", docs)
    svc = Corpus(Settings(data_dir=args.data_dir))
    if svc.catalog.exists(args.collection):  # measured from empty; the rest of the data dir is kept
        svc.catalog.delete(args.collection)
    svc.create_collection(args.collection)
    report = svc.ingest_paths(args.collection, [corpus])
    summary = report.summary()
    coll = svc.catalog.get(args.collection)
    stats = coll.stats()
    bound = bounds.measure()
    emb: Any = svc.embedder
    texts = [h["text"] for h in coll.docstore.chunks_by_id(list(range(1, 501))).values()]
    tokens = sum(emb.count_tokens(t) + 2 for t in texts) / max(len(texts), 1)
    flops = bounds.encoder_flops_per_token(emb.model, int(tokens)) * tokens
    bound_cps = bound["matmul_fp32_gflops"] * 1e9 / flops
    opener = gzip.open if corpus.suffix == ".gz" else open
    with opener(corpus, "rb") as f:
        text_bytes = len(f.read())
    summary["bound"] = {**bound, "tokens_per_chunk": round(tokens, 1),
                        "gflop_per_chunk": round(flops / 1e9, 3),
                        "embed_bound_chunks_per_s": round(bound_cps, 1),
                        "ratio": round(summary["chunks_per_s"] / bound_cps, 3)}
    summary["stages"] = stage_bounds(summary, text_bytes, stats["chunks"], coll.config.dim,
                                     1 / bound_cps, bound)
    summary["embedder"] = {"name": emb.name, "backend": getattr(emb, "backend", None),
                           "batch_size": getattr(emb, "batch_size", None)}
    print(f"embedder {emb.name}, backend {summary['embedder']['backend']}, "
          f"batch size {summary['embedder']['batch_size']}")
    print(f"bound: {bound_cps:.1f} chunks/s if embedding ran at peak matmul speed "
          f"({bound['matmul_fp32_gflops']} GFLOP/s, {tokens:.0f} tokens/chunk); "
          f"ratio {summary['bound']['ratio']}")
    print(f"documents {stats['documents']}  chunks {stats['chunks']}  "
          f"wall {summary['seconds']:.1f}s  {summary['chunks_per_s']} chunks/s")
    total = sum(summary["stage_seconds"].values())
    for stage, row in summary["stages"].items():
        print(f"  {stage:<11}{row['seconds']:8.2f}s  {100 * row['seconds'] / total:5.1f}%  "
              f"bound {row['bound_s']:.2e}s  ratio {row['ratio']}")
    if not docs and not args.no_ndcg:
        summary["scifact_test_ndcg10"] = scifact_ndcg(svc, args.collection, args.corpus.parent)
        print(f"SciFact test nDCG@10: {summary['scifact_test_ndcg10']}")
    suffix = "_quick" if args.quick else (f"_{docs}" if docs else "")
    write("ingest" + suffix, {"corpus": str(corpus), **stats, **summary})
    svc.close()


if __name__ == "__main__":
    main()
