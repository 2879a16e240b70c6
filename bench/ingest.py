"""Ingest SciFact (5,183 abstracts) end to end through the real pipeline; time per stage.

    python -m bench.ingest [--data-dir /tmp/ragtune-bench] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from api.services import Services
from api.settings import Settings

from . import bounds
from .common import SHARED, write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-bench"))
    p.add_argument("--corpus", type=Path, default=SHARED / "scifact" / "corpus.jsonl.gz")
    p.add_argument("--collection", default="scifact")
    p.add_argument("--quick", action="store_true", help="first 500 documents only")
    args = p.parse_args()
    if not args.corpus.exists():
        raise SystemExit(f"{args.corpus} not found (../shared/data is beside the checkout)")
    corpus = args.corpus
    if args.quick:
        import gzip

        corpus = args.data_dir.parent / "scifact-500.jsonl"
        with gzip.open(args.corpus, "rt") as src:
            corpus.write_text("".join(line for _, line in zip(range(500), src, strict=False)))
    shutil.rmtree(args.data_dir, ignore_errors=True)
    svc = Services(Settings(data_dir=args.data_dir))
    svc.create_collection(args.collection)
    report = svc.ingest_paths(args.collection, [corpus])
    summary = report.summary()
    stats = svc.catalog.get(args.collection).stats()
    bound = bounds.measure()
    coll = svc.catalog.get(args.collection)
    texts = [h["text"] for h in coll.docstore.chunks_by_id(list(range(1, 501))).values()]
    tokens = sum(svc.embedder.count_tokens(t) + 2 for t in texts) / max(len(texts), 1)
    flops = bounds.encoder_flops_per_token(svc.embedder.model, int(tokens)) * tokens
    bound_cps = bound["matmul_fp32_gflops"] * 1e9 / flops
    summary["bound"] = {**bound, "tokens_per_chunk": round(tokens, 1),
                        "gflop_per_chunk": round(flops / 1e9, 3),
                        "embed_bound_chunks_per_s": round(bound_cps, 1),
                        "ratio": round(summary["chunks_per_s"] / bound_cps, 3)}
    print(f"bound: {bound_cps:.1f} chunks/s if embedding ran at peak matmul speed "
          f"({bound['matmul_fp32_gflops']} GFLOP/s, {tokens:.0f} tokens/chunk); "
          f"ratio {summary['bound']['ratio']}")
    print(f"documents {stats['documents']}  chunks {stats['chunks']}  "
          f"wall {summary['seconds']:.1f}s  {summary['chunks_per_s']} chunks/s")
    total = sum(summary["stage_seconds"].values())
    for stage, sec in summary["stage_seconds"].items():
        print(f"  {stage:<11}{sec:8.2f}s  {100 * sec / total:5.1f}%")
    write("ingest" + ("_quick" if args.quick else ""), {"corpus": str(corpus), **stats, **summary})
    svc.close()


if __name__ == "__main__":
    main()
