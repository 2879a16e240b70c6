"""Ingest SciFact (5,183 abstracts) end to end through the real pipeline; time per stage, each beside
this machine's bound measured in the same run (peak fp32 matmul GFLOP/s, copy bandwidth):

- embed (and chunks/s overall): the encoder's FLOPs per chunk (2 x non-embedding parameters per
  token plus attention, at the mean tokens per chunk) at peak FLOP/s.
- parse and chunk: the corpus text read once at peak bandwidth (a loose floor: the work is tokenising).
- commit: each chunk's text and its 384-d fp32 embedding written once at peak bandwidth.
- index_save: the index's vectors (chunks x dim x 4 bytes) copied once at peak bandwidth.
Ratios are bound / measured seconds (chunks/s: measured / bound).

    python -m bench.ingest [--data-dir /tmp/ragtune-bench] [--quick | --docs N]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path
from typing import Any

from api.corpus import Corpus
from api.settings import Settings

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-bench"))
    p.add_argument("--corpus", type=Path, default=SHARED / "scifact" / "corpus.jsonl.gz")
    p.add_argument("--collection", default="scifact")
    p.add_argument("--docs", type=int, help="first N documents only")
    p.add_argument("--quick", action="store_true", help="first 500 documents (ingest_quick.json)")
    args = p.parse_args()
    require(args.corpus, "the SciFact corpus")
    docs = 500 if args.quick else args.docs
    corpus = args.corpus
    if docs:
        corpus = first_docs(args.corpus, args.data_dir.parent / f"scifact-{docs}.jsonl", docs)
    shutil.rmtree(args.data_dir, ignore_errors=True)
    svc = Corpus(Settings(data_dir=args.data_dir))
    svc.create_collection(args.collection)
    report = svc.ingest_paths(args.collection, [corpus])
    summary = report.summary()
    coll = svc.catalog.get(args.collection)
    stats = coll.stats()
    bound = bounds.measure()
    texts = [h["text"] for h in coll.docstore.chunks_by_id(list(range(1, 501))).values()]
    tokens = sum(svc.embedder.count_tokens(t) + 2 for t in texts) / max(len(texts), 1)
    flops = bounds.encoder_flops_per_token(svc.embedder.model, int(tokens)) * tokens
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
    print(f"bound: {bound_cps:.1f} chunks/s if embedding ran at peak matmul speed "
          f"({bound['matmul_fp32_gflops']} GFLOP/s, {tokens:.0f} tokens/chunk); "
          f"ratio {summary['bound']['ratio']}")
    print(f"documents {stats['documents']}  chunks {stats['chunks']}  "
          f"wall {summary['seconds']:.1f}s  {summary['chunks_per_s']} chunks/s")
    total = sum(summary["stage_seconds"].values())
    for stage, row in summary["stages"].items():
        print(f"  {stage:<11}{row['seconds']:8.2f}s  {100 * row['seconds'] / total:5.1f}%  "
              f"bound {row['bound_s']:.2e}s  ratio {row['ratio']}")
    suffix = "_quick" if args.quick else (f"_{docs}" if docs else "")
    write("ingest" + suffix, {"corpus": str(corpus), **stats, **summary})
    svc.close()


if __name__ == "__main__":
    main()
