"""Index types at scale: synthetic clustered 384-d vectors, flat vs HNSW vs IVF-PQ.

For each size: memory, build time, queries/s and recall@10 against exact search, beside this
machine's bound for an exact scan (batched flat search is a matrix product: 2·N·d FLOPs per query
against the measured peak matmul rate).

    python -m bench.scale [--sizes 100000 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from . import bounds
from .common import write

DIM = 384


def clustered(n: int, seed: int, centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, DIM))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build(kind: str, xb: np.ndarray) -> tuple[Any, float]:
    import faiss

    n = len(xb)
    t = time.perf_counter()
    if kind == "flat":
        index = faiss.IndexFlatIP(DIM)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 64
    else:
        nlist = int(4 * np.sqrt(n))
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(DIM), DIM, nlist, 48, 8,
                                 faiss.METRIC_INNER_PRODUCT)
        index.train(xb[: min(n, 50 * nlist)])
    index.add(xb)
    return index, time.perf_counter() - t


def tune(kind: str, index: Any) -> str:
    if kind == "hnsw":
        index.hnsw.efSearch = 64
        return "M=32 efConstruction=64 efSearch=64"
    if kind == "ivfpq":
        index.nprobe = 16
        return f"nlist={index.nlist} m=48 nbits=8 nprobe=16"
    return "exact"


def measure(kind: str, xb: np.ndarray, xq: np.ndarray, truth: np.ndarray,
            bound_qps: float) -> dict[str, Any]:
    import faiss

    index, build_s = build(kind, xb)
    params = tune(kind, index)
    index.search(xq[:10], 10)
    t = time.perf_counter()
    _, ids = index.search(xq, 10)
    qps = len(xq) / (time.perf_counter() - t)
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)]))
    mem = faiss.serialize_index(index).nbytes
    return {"index": kind, "params": params, "build_s": round(build_s, 2),
            "memory_mb": round(mem / 1e6, 1), "qps": round(qps, 1), "recall@10": round(recall, 4),
            "exact_scan_bound_qps": round(bound_qps, 1), "qps_ratio_to_bound": round(qps / bound_qps, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="100k only")
    args = p.parse_args()
    sizes = [100_000] if args.quick else args.sizes
    bound = bounds.measure()
    print(f"bounds: {bound}")
    centres = np.random.default_rng(0).standard_normal((2000, DIM)).astype(np.float32)
    rows = []
    for n in sizes:
        xb, xq = clustered(n, 1, centres), clustered(args.queries, 2, centres)
        import faiss

        exact = faiss.IndexFlatIP(DIM)
        exact.add(xb)
        _, truth = exact.search(xq, 10)
        bound_qps = bound["matmul_fp32_gflops"] * 1e9 / (2 * n * DIM)
        for kind in ("flat", "hnsw", "ivfpq"):
            row = {"n": n, **measure(kind, xb, xq, truth, bound_qps)}
            rows.append(row)
            print(" | ".join(f"{k}={v}" for k, v in row.items()))
    write("scale" + ("_quick" if args.quick else ""), {"bounds": bound, "rows": rows})


if __name__ == "__main__":
    main()
