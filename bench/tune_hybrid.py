"""Choose the hybrid fusion weight on SciFact's train queries, then report it on the test queries.

Run `python -m bench.ingest` first.

    python -m bench.tune_hybrid [--data-dir /tmp/ragtune-bench]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from api.corpus import Corpus
from api.settings import Settings
from retrieval.evaluation import load_qrels, load_queries, run_queries, score_run

from .common import SHARED, write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-bench"))
    p.add_argument("--alphas", nargs="+", type=float, default=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    args = p.parse_args()
    svc = Corpus(Settings(data_dir=args.data_dir))
    coll = svc.collection("scifact")
    queries = load_queries(SHARED / "scifact" / "queries.jsonl")
    splits = {s: load_qrels(SHARED / "scifact" / "qrels" / f"{s}.tsv") for s in ("train", "test")}

    def ndcg(split: str, alpha: float) -> float:
        qrels = splits[split]
        run = run_queries(coll, svc.embedder, {q: queries[q] for q in qrels}, mode="hybrid",
                          alpha=alpha)
        return score_run(run, qrels)[0]["ndcg@10"]

    train = {a: ndcg("train", a) for a in args.alphas}
    for a, v in train.items():
        print(f"train alpha {a:.1f}: nDCG@10 {v:.4f}")
    best = max(train, key=lambda a: train[a])
    test = ndcg("test", best)
    print(f"chosen alpha {best} -> test nDCG@10 {test:.4f}")
    write("tune_hybrid", {"train_ndcg10": train, "alpha": best, "test_ndcg10": test})


if __name__ == "__main__":
    main()
