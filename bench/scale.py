"""Index types at scale: synthetic clustered 384-d vectors; flat, HNSW, IVF-PQ and IVF-PQ with exact
re-ranking, so the index type can be chosen per collection size.

Each index is built once, then searched with a few settings (HNSW efSearch, IVF nprobe, re-ranking
k_factor); every row gives build time, memory, batched queries/s and recall@10 against exact search
on the same queries, each beside this machine's bound measured in the same run (peak fp32 matmul
GFLOP/s ``P`` and copy bandwidth ``B``):

- build: flat copies the vectors once (2·N·d·4 bytes / B). HNSW inserts each vector with a search of
  width efConstruction, so its floor is N x (that search's floor, below). IVF-PQ runs k-means on the
  training sample (2·n_train·nlist·d·iterations FLOPs), trains the product quantiser likewise, then
  assigns and encodes every vector (2·N·(nlist + 256)·d FLOPs), all at P.
- memory: what the index must hold: N·d·4 bytes of vectors (flat), plus N·2M·4 bytes of level-0
  links (HNSW), N·(m + 8) bytes of codes and ids (IVF-PQ), plus the N·d·4 raw vectors (re-ranked).
  Memory is the serialised size; ratio = bound / measured.
- queries/s: flat batched search is a matrix product, 2·N·d FLOPs per query at P. HNSW and IVF-PQ
  count the work they did (faiss's distance and code counters): a visited vector costs 2·d FLOPs
  and d·4 bytes, a scanned PQ code m bytes (+ 8 for its id) after 2·(nlist + 256)·d FLOPs to pick
  the lists and fill the lookup table; re-ranking reads k_factor·k more vectors. The floor is the
  larger of FLOPs / P and bytes / B; ratio = measured / bound. ``exact_scan_bound_qps`` (the flat
  bound) is kept on every row to show how far past brute force an approximate index gets.
- recall@10: the bound is 1.0, so the figure is its own ratio.

    python -m bench.scale --quick              # 100k, about 2 minutes here
    python -m bench.scale --n 1000000          # 1M, writes results/scale_1m.json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import bounds
from .common import write

DIM = 384
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 64, (32, 64, 128)
PQ_M = 48
IVF_NPROBE = (16, 64)
REFINE_K_FACTOR = (10, 50)


def clustered(n: int, seed: int, centres: np.ndarray, block: int = 100_000) -> np.ndarray:
    """Unit vectors near random centres; generated in blocks so 1M needs no float64 copy."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, block):
        m = min(block, n - start)
        x = centres[rng.integers(0, len(centres), m)] + 0.35 * rng.standard_normal(
            (m, DIM), dtype=np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def floor_s(flops: float, nbytes: float, bound: dict[str, float]) -> float:
    return max(flops / (bound["matmul_fp32_gflops"] * 1e9),
               nbytes / (bound["memory_bandwidth_gbs"] * 1e9))


def serialised_bytes(index: Any) -> int:
    import faiss

    writer = faiss.VectorIOWriter()
    faiss.write_index(index, writer)
    return int(writer.data.size())


def timed_search(index: Any, xq: np.ndarray) -> tuple[np.ndarray, float]:
    import faiss

    index.search(xq[:10], 10)
    faiss.cvar.hnsw_stats.reset()
    faiss.cvar.indexIVF_stats.reset()
    t = time.perf_counter()
    _, ids = index.search(xq, 10)
    return ids, time.perf_counter() - t


def recall(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)]))


# (index, kind, search parameters, build seconds, build floor seconds)
Build = tuple[Any, str, str, float, float]


def build_flat(xb: np.ndarray, bound: dict[str, float]) -> Iterator[Build]:
    import faiss

    t = time.perf_counter()
    index = faiss.IndexFlatIP(DIM)
    index.add(xb)
    build_s = time.perf_counter() - t
    yield index, "flat", "exact", build_s, floor_s(0, 2 * xb.nbytes, bound)


def build_hnsw(xb: np.ndarray, bound: dict[str, float]) -> Iterator[Build]:
    import faiss

    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(DIM, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(xb)
    build_s = time.perf_counter() - t
    # the floor of one insertion: a search of width efConstruction, counted on a sample
    index.hnsw.efSearch = HNSW_EF_CONSTRUCTION
    stats = faiss.cvar.hnsw_stats
    stats.reset()
    index.search(xb[:: max(1, len(xb) // 1000)], 10)
    per_insert = stats.ndis / max(1, len(xb[:: max(1, len(xb) // 1000)]))
    build_floor = len(xb) * floor_s(2 * DIM * per_insert, 4 * DIM * per_insert, bound)
    for ef in HNSW_EF_SEARCH:
        index.hnsw.efSearch = ef
        yield (index, "hnsw", f"M={HNSW_M} efConstruction={HNSW_EF_CONSTRUCTION} efSearch={ef}",
               build_s, build_floor)


def train_ivfpq(xb: np.ndarray, bound: dict[str, float]) -> tuple[Any, float, float]:
    import faiss

    n = len(xb)
    nlist = int(4 * np.sqrt(n))
    t = time.perf_counter()
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(DIM), DIM, nlist, PQ_M, 8,
                             faiss.METRIC_INNER_PRODUCT)
    n_train = min(n, 50 * nlist)
    index.train(xb[:n_train])
    index.add(xb)
    build_s = time.perf_counter() - t
    n_pq = min(n_train, 256 * index.pq.cp.max_points_per_centroid)
    flops = (2 * n_train * nlist * DIM * index.cp.niter + 2 * n_pq * 256 * DIM * index.pq.cp.niter
             + 2 * n * (nlist + 256) * DIM)
    return index, build_s, floor_s(flops, 0, bound)


def build_ivfpq(xb: np.ndarray, bound: dict[str, float]) -> Iterator[Build]:
    """One IVF-PQ build, searched as is and then wrapped with exact re-ranking of its candidates
    from the raw vectors (faiss IndexRefineFlat)."""
    import faiss

    base, build_s, build_floor = train_ivfpq(xb, bound)
    for nprobe in IVF_NPROBE:
        base.nprobe = nprobe
        yield (base, "ivfpq", f"nlist={base.nlist} m={PQ_M} nbits=8 nprobe={nprobe}", build_s,
               build_floor)
    t = time.perf_counter()
    index = faiss.IndexRefineFlat(base, faiss.swig_ptr(xb))
    build_s += time.perf_counter() - t
    build_floor += floor_s(0, 2 * xb.nbytes, bound)
    for nprobe in IVF_NPROBE:
        base.nprobe = nprobe
        for kf in REFINE_K_FACTOR:
            index.k_factor = kf
            yield (index, "ivfpq_refine", f"nlist={base.nlist} m={PQ_M} nbits=8 nprobe={nprobe}"
                   f" + exact re-rank k_factor={kf}", build_s, build_floor)


BUILDERS = {"flat": build_flat, "hnsw": build_hnsw, "ivfpq": build_ivfpq}


def memory_bound(kind: str, n: int) -> int:
    vectors = n * DIM * 4
    return {"flat": vectors, "hnsw": vectors + n * 2 * HNSW_M * 4, "ivfpq": n * (PQ_M + 8),
            "ivfpq_refine": n * (PQ_M + 8) + vectors}[kind]


def search_floor_s(kind: str, index: Any, n: int, nq: int, bound: dict[str, float]) -> float:
    """Per-query floor from the work counted during the timed search (see the module docstring)."""
    import faiss

    if kind == "flat":
        return floor_s(2 * n * DIM, 0, bound)
    if kind == "hnsw":
        ndis = faiss.cvar.hnsw_stats.ndis / nq
        return floor_s(2 * DIM * ndis, 4 * DIM * ndis, bound)
    nlist = faiss.extract_index_ivf(index).nlist
    codes = faiss.cvar.indexIVF_stats.ndis / nq
    flops, nbytes = 2 * (nlist + 256) * DIM + codes * PQ_M, codes * (PQ_M + 8)
    if kind == "ivfpq_refine":
        rerank = index.k_factor * 10
        flops, nbytes = flops + 2 * DIM * rerank, nbytes + 4 * DIM * rerank
    return floor_s(flops, nbytes, bound)


def rows_for(builder: str, xb: np.ndarray, xq: np.ndarray, truth: np.ndarray,
             bound: dict[str, float]) -> Iterator[dict[str, Any]]:
    n, exact_qps = len(xb), 1 / floor_s(2 * len(xb) * DIM, 0, bound)
    memory: dict[str, int] = {}
    for index, kind, params, build_s, build_floor in BUILDERS[builder](xb, bound):
        ids, seconds = timed_search(index, xq)
        qps = len(xq) / seconds
        bound_qps = 1 / search_floor_s(kind, index, n, len(xq), bound)
        if kind not in memory:
            memory[kind] = serialised_bytes(index)
        mem_floor = memory_bound(kind, n)
        yield {"n": n, "index": kind, "params": params,
               "build_s": round(build_s, 2), "build_bound_s": round(build_floor, 3),
               "build_ratio": round(build_floor / build_s, 3),
               "memory_bytes": memory[kind], "memory_mb": round(memory[kind] / 1e6, 1),
               "memory_bound_bytes": mem_floor,
               "memory_ratio": round(mem_floor / memory[kind], 3),
               "qps": round(qps, 1), "bound_qps": round(bound_qps, 1),
               "qps_ratio": round(qps / bound_qps, 3),
               "recall@10": round(recall(ids, truth), 4), "recall_bound": 1.0,
               "exact_scan_bound_qps": round(exact_qps, 1)}


def label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k"


COLUMNS = ["n", "index", "params", "build_s", "build_ratio", "memory_mb", "memory_ratio", "qps",
           "bound_qps", "qps_ratio", "recall@10"]


def main() -> None:
    import faiss

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", nargs="+", type=int, default=[100_000, 1_000_000],
                   help="collection sizes (vectors)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--kinds", nargs="+", choices=list(BUILDERS), default=list(BUILDERS),
                   help="ivfpq also reports IVF-PQ with exact re-ranking")
    p.add_argument("--quick", action="store_true", help="100k only (results/scale_quick.json)")
    args = p.parse_args()
    sizes = [100_000] if args.quick else args.n
    bound = bounds.measure()
    print(f"bounds: {bound}  faiss threads: {faiss.omp_get_max_threads()}")
    print(" | ".join(COLUMNS))
    centres = np.random.default_rng(0).standard_normal((2000, DIM)).astype(np.float32)
    rows = []
    for n in sizes:
        xb, xq = clustered(n, 1, centres), clustered(args.queries, 2, centres)
        exact = faiss.IndexFlatIP(DIM)
        exact.add(xb)
        _, truth = exact.search(xq, 10)
        del exact
        for kind in args.kinds:
            for row in rows_for(kind, xb, xq, truth, bound):
                rows.append(row)
                print(" | ".join(str(row[c]) for c in COLUMNS), flush=True)
    name = "scale_quick" if args.quick else "scale_" + "_".join(label(n) for n in sizes)
    write(name, {"bounds": bound, "queries": args.queries, "rows": rows})


if __name__ == "__main__":
    main()
