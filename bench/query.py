"""Search quality and latency on SciFact: nDCG@10 on the test queries, p50/p95/p99 latency of 100
queries in-process and over HTTP (one client, and 8 concurrent clients) on 127.0.0.1.

Run `python -m bench.ingest` first (it builds the collection this reads).

    python -m bench.query [--data-dir /tmp/ragtune-bench] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from api.services import Services
from api.settings import Settings
from retrieval.evaluation import load_qrels, load_queries, run_queries, score_run

from . import bounds
from .common import SHARED, percentiles, write

PORT = 8765


def _serve(data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RAGTUNE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(PORT)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/healthz").status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def _http_latency(texts: list[str], collection: str, clients: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{PORT}/v1/collections/{collection}/search"

    def one(http: httpx.Client, text: str) -> float:
        t = time.perf_counter()
        r = http.post(url, json={"query": text, "k": 10})
        r.raise_for_status()
        return time.perf_counter() - t

    with httpx.Client(timeout=60) as http:
        one(http, "warm up")
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            samples = list(pool.map(lambda t: one(http, t), texts))
        wall = time.perf_counter() - start
    return {**percentiles(samples), "clients": clients, "qps": len(texts) / wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-bench"))
    p.add_argument("--collection", default="scifact")
    p.add_argument("--quick", action="store_true", help="skip the HTTP measurements")
    args = p.parse_args()
    svc = Services(Settings(data_dir=args.data_dir))
    coll = svc.collection(args.collection)
    queries = load_queries(SHARED / "scifact" / "queries.jsonl")
    qrels = load_qrels(SHARED / "scifact" / "qrels" / "test.tsv")
    test_queries = {q: queries[q] for q in qrels}
    metrics = {}
    for mode in ("dense", "keyword", "hybrid"):
        means, _ = score_run(run_queries(coll, svc.embedder, test_queries, mode=mode), qrels)
        metrics[mode] = means
        print(f"SciFact test ({len(qrels)} queries), {mode:<8}: "
              + "  ".join(f"{k} {v:.4f}" for k, v in means.items()))

    texts = list(test_queries.values())[:100]
    svc.search(args.collection, "warm up", 10)  # builds the BM25 index, once per process
    samples = []
    for text in texts:
        t = time.perf_counter()
        svc.search(args.collection, text, 10)
        samples.append(time.perf_counter() - t)
    inproc = percentiles(samples)
    bound = bounds.measure()
    tokens = sum(svc.embedder.count_tokens(t) + 2 for t in texts) / len(texts)
    embed_s = bounds.encoder_flops_per_token(svc.embedder.model, int(tokens)) * tokens / (
        bound["matmul_fp32_gflops"] * 1e9)
    scan_s = len(coll.index) * coll.config.dim * 4 / (bound["memory_bandwidth_gbs"] * 1e9)
    bound_ms = (embed_s + scan_s) * 1000
    inproc["bound_ms"] = round(bound_ms, 3)
    inproc["ratio_bound_to_p50"] = round(bound_ms / inproc["p50_ms"], 3)
    print(f"in-process search: p50 {inproc['p50_ms']:.1f} ms  p95 {inproc['p95_ms']:.1f} ms  "
          f"(bound {bound_ms:.2f} ms: query embedding at peak FLOP/s + one scan at peak bandwidth)")
    svc.close()
    result = {"metrics": metrics, "queries": len(qrels), "in_process": inproc, "bounds": bound,
              "anchors": {"bm25": 0.665, "all-MiniLM-L6-v2": 0.645, "bm25+cross-encoder": 0.688}}
    if not args.quick:
        server = _serve(args.data_dir)
        try:
            for clients in (1, 8):
                lat = _http_latency(texts, args.collection, clients)
                lat["bound_ms"] = round(bound_ms, 3)
                lat["ratio_bound_to_p50"] = round(bound_ms / lat["p50_ms"], 3)
                result[f"http_{clients}_clients"] = lat
                print(f"HTTP, {clients} client(s): p50 {lat['p50_ms']:.1f} ms  "
                      f"p95 {lat['p95_ms']:.1f} ms  {lat['qps']:.1f} queries/s")
        finally:
            server.terminate()
            server.wait()
    write("query" + ("_quick" if args.quick else ""), result)


if __name__ == "__main__":
    main()
