"""Search and ask on SciFact: nDCG@10 on the test queries; search latency (100 queries) and ask latency
(the real generator, a few claims) p50/p95/p99, in-process and over HTTP on 127.0.0.1 with one client
and with 8 concurrent clients.

Bounds, measured in the same run (peak fp32 matmul GFLOP/s, copy bandwidth):
- search: the query embedding at peak FLOP/s (encoder FLOPs per token x tokens) plus one scan of the
  collection's vectors at peak bandwidth; queries/s bound = 1 / that.
- ask: the search floor, plus prefill at peak FLOP/s (2 x generator parameters per prompt token) and
  decode at peak bandwidth (the weights read once per new token), with the prompt and answer token
  counts of each claim taken from the in-process asks (greedy decoding, so the HTTP asks generate the
  same tokens). The server generates one answer at a time, so 8 concurrent asks queue; their bound
  is still one ask's floor, and asks/s bound = 1 / the mean floor.
- nDCG@10 and recall are quality figures: their anchors are the published SciFact numbers.
Latency ratios are bound / measured; throughput ratios measured / bound. With few asks, p99 is close
to the maximum (the sample count is in the JSON).

Every ask runs the model: the benchmark sets min_score to -1, so no claim is refused before generation.
Run `python -m bench.ingest` first (it builds the collection this reads).

`--search-only` leaves out the asks (results/query_search.json): nDCG@10, search latency in each mode
in-process and hybrid over HTTP, and the BM25 index's upkeep on this collection: a full build from
the docstore's texts against loading its saved file and against updating it in place for a few
changed documents (the scores of the updated index are checked equal to a fresh build's).

    python -m bench.query [--data-dir /tmp/ragtune-bench] [--quick] [--asks 16] [--ask-tokens 64]
    python -m bench.query --search-only [--data-dir /tmp/ragtune-bench]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from api.services import Services
from api.settings import Settings
from retrieval.bm25 import BM25Index
from retrieval.evaluation import load_qrels, load_queries, run_queries, score_run

from . import bounds
from .common import SHARED, Timer, percentiles, require, write

PORT = 8765
ANCHORS = {"bm25": 0.665, "all-MiniLM-L6-v2": 0.645, "bm25+cross-encoder": 0.688}


def _serve(data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RAGTUNE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
           "RAGTUNE_MIN_SCORE": "-1"}
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


def with_bound(lat: dict[str, Any], bound_ms: float) -> dict[str, Any]:
    lat["bound_ms"] = round(bound_ms, 3)
    for p in ("p50", "p95", "p99"):
        lat[f"ratio_bound_to_{p}"] = round(bound_ms / lat[f"{p}_ms"], 3)
    if "per_s" in lat:
        lat["bound_per_s"] = round(1000 / bound_ms, 2)
        lat["ratio_per_s_to_bound"] = round(lat["per_s"] / lat["bound_per_s"], 3)
    return lat


def _http(texts: list[str], clients: int, post: Callable[[httpx.Client, str], None],
          warm: str) -> dict[str, Any]:
    def one(http: httpx.Client, text: str) -> float:
        t = time.perf_counter()
        post(http, text)
        return time.perf_counter() - t

    with httpx.Client(timeout=900) as http:
        one(http, warm)
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            samples = list(pool.map(lambda t: one(http, t), texts))
        wall = time.perf_counter() - start
    return {**percentiles(samples), "clients": clients, "per_s": len(texts) / wall}


def http_search(texts: list[str], collection: str, clients: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{PORT}/v1/collections/{collection}/search"

    def post(http: httpx.Client, text: str) -> None:
        http.post(url, json={"query": text, "k": 10}).raise_for_status()

    return _http(texts, clients, post, "warm up")


def http_ask(texts: list[str], collection: str, clients: int, tokens: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{PORT}/v1/collections/{collection}/ask"

    def post(http: httpx.Client, text: str) -> None:
        r = http.post(url, json={"question": text, "k": 5, "max_new_tokens": tokens})
        r.raise_for_status()

    return _http(texts, clients, post, texts[0])


def quality(svc: Services, coll: Any, queries: dict[str, str],
            qrels: dict[str, dict[str, int]]) -> dict[str, dict[str, float]]:
    metrics = {}
    for mode in ("dense", "keyword", "hybrid"):
        means, _ = score_run(run_queries(coll, svc.embedder, queries, mode=mode), qrels)
        metrics[mode] = means
        print(f"SciFact test ({len(qrels)} queries), {mode:<8}: "
              + "  ".join(f"{k} {v:.4f}" for k, v in means.items()))
    return metrics


def search_floor_ms(embedder: Any, scan_bytes: int, text: str, bound: dict[str, float]) -> float:
    tokens = embedder.count_tokens(text) + 2
    embed_s = bounds.encoder_flops_per_token(embedder.model, tokens) * tokens / (
        bound["matmul_fp32_gflops"] * 1e9)
    return (embed_s + scan_bytes / (bound["memory_bandwidth_gbs"] * 1e9)) * 1000


def search_in_process(svc: Services, collection: str, texts: list[str],
                      mode: str = "hybrid") -> dict[str, Any]:
    svc.search(collection, "warm up", 10, mode=mode)  # loads the BM25 index, once per process
    samples = []
    for text in texts:
        t = time.perf_counter()
        svc.search(collection, text, 10, mode=mode)
        samples.append(time.perf_counter() - t)
    return percentiles(samples)


def bm25_upkeep(coll: Any, changed_docs: int = 10) -> dict[str, Any]:
    """Seconds to build the BM25 index from every text, to save and load it, and to update it in
    place for `changed_docs` documents removed and added back; the updated index must score
    every chunk as a fresh build does."""
    ids, texts = coll.docstore.chunk_texts()
    with Timer() as build:
        full = BM25Index()
        full.build(ids, texts)
    path = coll.root / "bm25-bench.npz"
    try:
        with Timer() as save:
            full.save(path)
        with Timer() as load:
            BM25Index.load(path)
    finally:
        path.unlink(missing_ok=True)
    refs = coll.docstore.chunk_refs()
    docs = sorted({d for _, d in refs})[:: max(1, len({d for _, d in refs}) // changed_docs)]
    picked = [i for i, d in refs if d in set(docs[:changed_docs])]
    text_of = dict(zip(ids.tolist(), texts, strict=True))
    with Timer() as update:
        full.remove(np.array(picked))
        full.add(np.array(picked), [text_of[i] for i in picked])
    fresh = BM25Index()
    fresh.build(ids, texts)
    for query in ("cancer risk", "vitamin D deficiency in children", "protein folding"):
        a, b = full.score_all(query), fresh.score_all(query)
        if full.lookup(a, ids.tolist()) != fresh.lookup(b, ids.tolist()):
            raise SystemExit(f"the updated BM25 index scores {query!r} unlike a fresh build")
    out = {"chunks": len(ids), "build_s": build.seconds, "save_s": save.seconds,
           "load_s": load.seconds, "changed_docs": changed_docs, "changed_chunks": len(picked),
           "update_s": update.seconds}
    print(f"BM25 index, {len(ids)} chunks: full build {build.seconds:.2f} s, save "
          f"{save.seconds:.3f} s, load {load.seconds:.3f} s; {changed_docs} documents "
          f"({len(picked)} chunks) removed and added back in place {1000 * update.seconds:.1f} ms, "
          f"scores equal to a fresh build")
    return out


def ask_in_process(svc: Services, collection: str, texts: list[str],
                   tokens: int) -> tuple[dict[str, Any], dict[str, tuple[int, int]], Any]:
    """Latency of each ask, each claim's (prompt, answer) token counts, and the loaded generator."""
    config = svc.ask_config(k=5, max_new_tokens=tokens)
    svc.ask(collection, texts[0], config)  # loads the generator
    gen: Any = svc.serving.generator
    samples, counts = [], {}
    for text in texts:
        t = time.perf_counter()
        svc.ask(collection, text, config)
        samples.append(time.perf_counter() - t)
        counts[text] = (gen.last_stats.prompt_tokens, gen.last_stats.new_tokens)
    lat = percentiles(samples)
    lat.update(mean_prompt_tokens=sum(c[0] for c in counts.values()) / len(counts),
               mean_new_tokens=sum(c[1] for c in counts.values()) / len(counts),
               max_new_tokens=tokens, generator_mb=round(gen.loaded.footprint_bytes / 1e6, 1),
               quantization=gen.loaded.quantization)
    return lat, counts, gen.loaded


def show(label: str, lat: dict[str, Any], unit: str) -> None:
    rate = f"  {lat['per_s']:.2f} {unit}/s (bound {lat['bound_per_s']:.2f})" if "per_s" in lat else ""
    print(f"{label:<34} p50 {lat['p50_ms']:8.1f} ms  p95 {lat['p95_ms']:8.1f} ms  "
          f"p99 {lat['p99_ms']:8.1f} ms  bound {lat['bound_ms']:7.2f} ms  "
          f"(p50 ratio {lat['ratio_bound_to_p50']}){rate}  n={lat['n']}")


def http_runs(args: argparse.Namespace, texts: list[str], claims: list[str]) -> dict[str, Any]:
    """Raw HTTP latencies; bounds are attached once the run's bounds are final."""
    result: dict[str, Any] = {}
    server = _serve(args.data_dir)
    try:
        for clients in (1, 8):
            result[f"http_search_{clients}_clients"] = http_search(texts, args.collection, clients)
        batches = {1: claims, 8: [claims[i % len(claims)] for i in range(args.concurrent_asks)]}
        for clients, asked in batches.items():
            lat = http_ask(asked, args.collection, clients, args.ask_tokens)
            result[f"http_ask_{clients}_clients"] = {**lat, "claims": asked}
    finally:
        server.terminate()
        server.wait()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-bench"))
    p.add_argument("--collection", default="scifact")
    p.add_argument("--asks", type=int, default=16, help="asks in-process and over HTTP, 1 client")
    p.add_argument("--concurrent-asks", type=int, default=16, help="asks shared by 8 clients")
    p.add_argument("--ask-tokens", type=int, default=64, help="max_new_tokens of each ask")
    p.add_argument("--quick", action="store_true",
                   help="6 asks, 8 concurrent asks, 32 new tokens (results/query_quick.json)")
    p.add_argument("--search-only", action="store_true",
                   help="no asks; search in each mode and BM25 upkeep (results/query_search.json)")
    args = p.parse_args()
    if args.quick:
        args.asks, args.concurrent_asks, args.ask_tokens = 6, 8, 32
    require(SHARED / "scifact" / "queries.jsonl", "the SciFact queries")
    svc = Services(Settings(data_dir=args.data_dir, min_score=-1))
    if not svc.catalog.exists(args.collection):
        raise SystemExit(f"no collection {args.collection!r} in {args.data_dir}: "
                         f"run python -m bench.ingest --data-dir {args.data_dir} first")
    coll = svc.collection(args.collection)
    queries = load_queries(SHARED / "scifact" / "queries.jsonl")
    qrels = load_qrels(SHARED / "scifact" / "qrels" / "test.tsv")
    test_queries = {q: queries[q] for q in qrels}
    metrics = quality(svc, coll, test_queries, qrels)
    first = bounds.measure()
    texts = list(test_queries.values())[:100]
    inproc = search_in_process(svc, args.collection, texts)
    if args.search_only:
        return search_only(args, svc, coll, metrics, len(qrels), first, texts, inproc)
    claims = texts[: args.asks]
    ask, counts, loaded = ask_in_process(svc, args.collection, claims, args.ask_tokens)
    embedder, scan_bytes = svc.embedder, len(coll.index) * coll.config.dim * 4
    svc.close()
    http = http_runs(args, texts, claims)
    # the best of a measurement before and after: other load on the machine only lowers them
    bound = {k: max(v, first[k]) for k, v in bounds.measure().items()}
    print(f"bounds: {bound}")
    params = bounds.decoder_parameters(loaded.model)
    search_ms = sum(search_floor_ms(embedder, scan_bytes, t, bound) for t in texts) / len(texts)
    floors = {c: search_floor_ms(embedder, scan_bytes, c, bound) + 1000 * bounds.generation_floor_s(
        *counts[c], params, loaded.footprint_bytes, bound) for c in claims}
    show("search in-process", with_bound(inproc, search_ms), "queries")
    show("ask in-process", with_bound(ask, sum(floors.values()) / len(floors)), "asks")
    for key, lat in http.items():
        asked = lat.pop("claims", None)
        floor = search_ms if asked is None else sum(floors[c] for c in asked) / len(asked)
        show(key.replace("_", " "), with_bound(lat, floor), "asks" if asked else "queries")
    result = {"metrics": metrics, "queries": len(qrels), "bounds": bound, "anchors": ANCHORS,
              "in_process": inproc, "ask_in_process": ask, **http}
    write("query" + ("_quick" if args.quick else ""), result)


def search_only(args: argparse.Namespace, svc: Services, coll: Any, metrics: dict[str, Any],
                queries: int, first: dict[str, float], texts: list[str],
                inproc: dict[str, Any]) -> None:
    """The search half of `main`: every figure but the asks."""
    modes = {m: search_in_process(svc, args.collection, texts, m) for m in ("dense", "keyword")}
    upkeep = bm25_upkeep(coll)
    embedder, scan_bytes = svc.embedder, len(coll.index) * coll.config.dim * 4
    svc.close()
    server = _serve(args.data_dir)
    try:
        http = {f"http_search_{c}_clients": http_search(texts, args.collection, c) for c in (1, 8)}
    finally:
        server.terminate()
        server.wait()
    bound = {k: max(v, first[k]) for k, v in bounds.measure().items()}
    print(f"bounds: {bound}")
    search_ms = sum(search_floor_ms(embedder, scan_bytes, t, bound) for t in texts) / len(texts)
    show("search in-process", with_bound(inproc, search_ms), "queries")
    for mode, lat in modes.items():
        show(f"{mode} search in-process", with_bound(lat, search_ms), "queries")
    for key, lat in http.items():
        show(key.replace("_", " "), with_bound(lat, search_ms), "queries")
    write("query_search", {"metrics": metrics, "queries": queries, "bounds": bound,
                           "anchors": ANCHORS, "in_process": inproc,
                           **{f"{m}_in_process": lat for m, lat in modes.items()}, **http,
                           "bm25": upkeep, "load_average_1_5_15_min": os.getloadavg()})


if __name__ == "__main__":
    main()
