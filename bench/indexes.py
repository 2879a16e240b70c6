"""ragtune's index types as a collection gets them: flat, hnsw and ivfpq through the `VectorIndex`
registry (retrieval/index.py), on synthetic clustered 384-d vectors (bench.scale's generator).

`bench.scale` measures bare faiss indexes and their settings; this measures the backends with what
ragtune adds: ids, tombstones, training as the index grows, exact re-ranking, filters. Vectors go in
by batches of `--batch` (ingest commits document by document, so an index grows in small steps);
queries come one at a time (as a search request does). Each figure is printed beside its bound,
measured in the same run (peak fp32 matmul GFLOP/s ``P``, copy bandwidth ``B``):

- build: the bytes every backend must store (N·d·4, written once: 2·N·d·4 / B), plus for hnsw one
  search of width efConstruction per insertion (distances counted on a sample, 2·d FLOPs each at P),
  plus for ivfpq each training's k-means (2·n_train·nlist·d·iterations) and product quantiser, and
  the encoding of every vector added while trained (2·(nlist + 256)·d each), at P.
- p50 latency: the work the query did, counted by faiss: flat reads N·d·4 bytes (at B); hnsw 2·d
  FLOPs and d·4 bytes per visited vector; ivfpq picks lists and fills its lookup table
  (2·(nlist + 256)·d FLOPs), reads each scanned code (m + 8 bytes) and re-ranks k_factor·k vectors
  (d·4 bytes each). The floor is the larger of FLOPs / P and bytes / B; ratio = bound / measured.
- the same with half the ids allowed (a filter): hnsw walks the graph through a bitmap, ivfpq
  scans the lists through an id set.
- recall@10 against exact search on the same queries; the bound is 1.0.
- size on disk (what `save` writes, and what the index holds in memory): vectors N·d·4 and ids
  N·8 for all; hnsw adds level-0 links N·2·M·4 and a live byte; ivfpq adds codes and ids N·(m + 8).

    python -m bench.indexes              # 100k vectors, 2.5 minutes on 2 cores
    python -m bench.indexes --n 200000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.ann import HnswIndex, IvfPqIndex, pq_subvectors
from retrieval.index import INDEXES, VectorIndex

from . import bounds
from .common import percentiles, write
from .scale import DIM, clustered, floor_s

K = 10


def build(kind: str, xb: np.ndarray, batch: int, bound: dict[str, float]) -> tuple[Any, float, float]:
    """The index, its build seconds and its build floor in seconds."""
    index = INDEXES[kind].new(DIM, use_gpu=False)
    flops, seconds = 0.0, 0.0
    for start in range(0, len(xb), batch):
        block = xb[start:start + batch]
        trained_at = getattr(index, "_trained_at", 0)
        t = time.perf_counter()
        index.add(np.arange(start, start + len(block)), block)
        seconds += time.perf_counter() - t
        if isinstance(index, IvfPqIndex) and index.trained:
            flops += ivfpq_add_flops(index, len(block), retrained=index._trained_at != trained_at)
    floor = floor_s(flops, 2 * xb.nbytes, bound)
    if isinstance(index, HnswIndex):
        floor += len(xb) * hnsw_insert_floor(index, xb, bound)
    return index, seconds, floor


def ivfpq_add_flops(index: IvfPqIndex, added: int, retrained: bool) -> float:
    ivf, m = index._ivf, pq_subvectors(DIM)
    encode = 2 * (ivf.nlist + 256) * DIM
    if not retrained:
        return added * encode
    n = index._trained_at
    n_train = min(n, 50 * ivf.nlist)
    n_pq = min(n_train, 256 * ivf.pq.cp.max_points_per_centroid)
    kmeans = 2 * n_train * ivf.nlist * DIM * ivf.cp.niter
    pq = 2 * n_pq * 256 * (DIM // m) * m * ivf.pq.cp.niter
    return kmeans + pq + n * encode


def hnsw_insert_floor(index: HnswIndex, xb: np.ndarray, bound: dict[str, float]) -> float:
    """The floor of one insertion: a search of width efConstruction, its distances counted."""
    import faiss

    sample = xb[:: max(1, len(xb) // 500)]
    graph = index._graph
    stats = faiss.cvar.hnsw_stats  # type: ignore[attr-defined]
    stats.reset()
    params = faiss.SearchParametersHNSW(efSearch=index.ef_construction)  # type: ignore[attr-defined]
    graph.search(sample, K, params=params)
    per_insert = stats.ndis / len(sample)
    return floor_s(2 * DIM * per_insert, 4 * DIM * per_insert, bound)


def query_floor(index: VectorIndex, eligible: int, bound: dict[str, float]) -> float:
    """The floor of the query just run, from faiss's counters (see the module docstring); when
    they counted nothing the query was answered by an exact scan of the `eligible` vectors."""
    import faiss

    graph, codes = faiss.cvar.hnsw_stats.ndis, faiss.cvar.indexIVF_stats.ndis  # type: ignore[attr-defined]
    if isinstance(index, HnswIndex) and graph:
        return floor_s(2 * DIM * graph, 4 * DIM * graph, bound)
    if isinstance(index, IvfPqIndex) and codes:
        m, rerank = pq_subvectors(DIM), min(len(index), K * index.k_factor)
        flops = 2 * (index._ivf.nlist + 256) * DIM + codes * m + 2 * DIM * rerank
        return floor_s(flops, codes * (m + 8) + 4 * DIM * rerank, bound)
    return floor_s(2 * eligible * DIM, 4 * eligible * DIM, bound)


def timed_queries(index: VectorIndex, xq: np.ndarray, allowed: np.ndarray | None,
                  bound: dict[str, float]) -> tuple[np.ndarray, list[float], list[float]]:
    import faiss

    found, seconds, floors = [], [], []
    eligible = len(index) if allowed is None else len(allowed)
    index.search(xq[:5], K, allowed_ids=allowed)  # warm
    for q in xq:
        faiss.cvar.hnsw_stats.reset()  # type: ignore[attr-defined]
        faiss.cvar.indexIVF_stats.reset()  # type: ignore[attr-defined]
        t = time.perf_counter()
        _, ids = index.search(q[None], K, allowed_ids=allowed)
        seconds.append(time.perf_counter() - t)
        floors.append(query_floor(index, eligible, bound))
        found.append(ids[0])
    return np.array(found), seconds, floors


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True)]))


def disk_bound(kind: str, n: int) -> int:
    base = n * (DIM * 4 + 8)
    return base + {"flat": 0, "hnsw": n * (2 * 32 * 4 + 1),
                   "ivfpq": n * (pq_subvectors(DIM) + 8)}.get(kind, 0)


def row(kind: str, xb: np.ndarray, xq: np.ndarray, truth: dict[str, np.ndarray],
        allowed: np.ndarray, args: argparse.Namespace, bound: dict[str, float]) -> dict[str, Any]:
    index, build_s, build_floor = build(kind, xb, args.batch, bound)
    out: dict[str, Any] = {"index": kind, "n": len(xb), "build_s": round(build_s, 2),
                           "build_bound_s": round(build_floor, 3),
                           "build_ratio": round(build_floor / build_s, 3)}
    for label, filt in (("", None), ("filtered_", allowed)):
        found, seconds, floors = timed_queries(index, xq, filt, bound)
        p50 = percentiles(seconds)["p50_ms"]
        floor_ms = float(np.median(floors)) * 1000
        out.update({f"{label}p50_ms": round(p50, 3), f"{label}p50_bound_ms": round(floor_ms, 4),
                    f"{label}p50_ratio": round(floor_ms / p50, 3),
                    f"{label}recall@10": round(recall(found, truth[label]), 4)})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / INDEXES[kind].file_name
        index.save(path)
        size = path.stat().st_size
    out.update({"disk_mb": round(size / 1e6, 1), "disk_bound_mb": round(disk_bound(kind, len(xb)) / 1e6, 1),
                "disk_ratio": round(disk_bound(kind, len(xb)) / size, 3)})
    return out


COLUMNS = ["index", "build_s", "build_bound_s", "p50_ms", "p50_bound_ms", "recall@10",
           "filtered_p50_ms", "filtered_p50_bound_ms", "filtered_recall@10", "disk_mb", "disk_bound_mb"]


def main() -> None:
    import faiss

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="vectors")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--batch", type=int, default=1000, help="vectors per add, as ingest commits")
    p.add_argument("--kinds", nargs="+", choices=sorted(INDEXES), default=["flat", "hnsw", "ivfpq"])
    args = p.parse_args()
    bound = bounds.measure()
    print(f"bounds: {bound}  faiss threads: {faiss.omp_get_max_threads()}  n={args.n} "
          f"queries={args.queries} batch={args.batch}")
    centres = np.random.default_rng(0).standard_normal((2000, DIM)).astype(np.float32)
    xb, xq = clustered(args.n, 1, centres), clustered(args.queries, 2, centres)
    allowed = np.arange(0, args.n, 2)  # half the ids: a filter wide enough for the approximate path
    sims = xq @ xb.T
    truth = {"": np.argsort(-sims, axis=1)[:, :K],
             "filtered_": allowed[np.argsort(-sims[:, allowed], axis=1)[:, :K]]}
    del sims
    print(" | ".join(COLUMNS))
    rows = []
    for kind in args.kinds:
        rows.append(row(kind, xb, xq, truth, allowed, args, bound))
        print(" | ".join(str(rows[-1][c]) for c in COLUMNS), flush=True)
    write(f"indexes_{args.n // 1000}k", {"bounds": bound, "queries": args.queries, "batch": args.batch,
                                         "k": K, "rows": rows})


if __name__ == "__main__":
    main()
