"""Ingest SciFact (5,183 abstracts) end to end through the real pipeline; time per stage.

    python -m bench.ingest [--data-dir /tmp/ragtune-bench] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from api.services import Services
from api.settings import Settings

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
    print(f"documents {stats['documents']}  chunks {stats['chunks']}  "
          f"wall {summary['seconds']:.1f}s  {summary['chunks_per_s']} chunks/s")
    total = sum(summary["stage_seconds"].values())
    for stage, sec in summary["stage_seconds"].items():
        print(f"  {stage:<11}{sec:8.2f}s  {100 * sec / total:5.1f}%")
    write("ingest" + ("_quick" if args.quick else ""), {"corpus": str(corpus), **stats, **summary})
    svc.close()


if __name__ == "__main__":
    main()
