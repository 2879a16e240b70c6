"""Ingest and serve on a local Ray cluster against the single-machine paths, on the same files.

Ingest: the same N text files (SciFact abstracts, one per file, or synthetic text without the shared
data) into a fresh collection, (a) locally, (b) on Ray with 1 embedder worker holding both CPUs,
(c) with 2 workers of 1 CPU each. Seconds exclude loading the model (the local embedder is loaded
before the clock starts; the workers' start-up is reported apart), as in `bench.ingest`. The bound:
one Ray worker is at most 15 % slower than local (chunks/s >= 0.85 x local): the cluster's overhead
is shipping bytes and vectors and committing in order, which should be small beside embedding.
On 2 cores, 2 workers cannot be faster than 1. Also printed: chunks/s per worker and the bytes per
chunk in the docstore and in the index, the figures the README's sizing table is derived from.

Serve: `ragtune serve --cluster` with 1 and 2 reader replicas on loopback (the real embedder and
generator), closed-loop clients: searches/s over `--serve-seconds`, asks/s over `--asks` questions
(max 32 new tokens). The machine's load average is printed beside the figures: they are contended.

    python -m bench.cluster [--docs 600] [--skip-serve] [--serve-seconds 10] [--asks 6]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from api.corpus import Corpus
from api.settings import Settings

from .common import SHARED, write

BOUND = 0.85  # one Ray worker's chunks/s against local's
CPUS = 4  # logical CPUs of the local cluster: 2 replicas + the writer need 3 (the machine has 2 cores)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_files(out: Path, docs: int) -> list[str]:
    """`docs` text files under `out`; returns a query per file (its first words)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    corpus = SHARED / "scifact" / "corpus.jsonl.gz"
    queries = []
    if corpus.exists():
        with gzip.open(corpus, "rt") as src:
            for i, line in zip(range(docs), src, strict=False):
                rec = json.loads(line)
                (out / f"{i:05d}.txt").write_text(f"{rec['title']}\n\n{rec['text']}\n")
                queries.append(rec["title"])
    else:
        words = "pump valve invoice badge printer leak holiday password meeting parking".split()
        for i in range(docs):
            text = " ".join(f"The {words[(i + j) % 10]} rule {i}.{j} applies to form {j * i}."
                            for j in range(60))
            (out / f"{i:05d}.txt").write_text(text)
            queries.append(f"{words[i % 10]} rule {i}")
    return queries


def _sizes(svc: Corpus, name: str) -> dict[str, Any]:
    coll = svc.catalog.get(name)
    chunks = coll.stats()["chunks"]
    coll.flush()
    docstore = sum(p.stat().st_size for p in coll.root.glob("docstore.sqlite*"))
    index = sum(p.stat().st_size for p in coll.root.glob("index*"))
    return {"chunks": chunks, "docstore_bytes_per_chunk": round(docstore / chunks),
            "index_bytes_per_chunk": round(index / chunks)}


def ingest_local(data_dir: Path, files: Path) -> dict[str, Any]:
    shutil.rmtree(data_dir, ignore_errors=True)
    svc = Corpus(Settings(data_dir=data_dir))
    svc.create_collection("bench")
    svc.embedder.embed_batch(["warm up"])
    report = svc.ingest_paths("bench", [files])
    row = {"mode": "local", "workers": 0, "cpus_per_worker": None, "start_s": 0.0,
           "seconds": round(report.seconds, 2), **_sizes(svc, "bench"), "load": load()}
    svc.close()
    return row


def ingest_ray(data_dir: Path, files: Path, workers: int, cpus: float) -> dict[str, Any]:
    import ray

    from api.cluster import embedder_factory
    from cluster.ingest import ClusterIngestConfig, ingest_on_cluster, start_workers

    shutil.rmtree(data_dir, ignore_errors=True)
    svc = Corpus(Settings(data_dir=data_dir))
    coll = svc.create_collection("bench")  # loads the embedder here too: before the clock starts
    config = ClusterIngestConfig(workers=workers, cpus_per_worker=cpus)
    t = time.perf_counter()
    actors = start_workers(embedder_factory(svc), coll, config)
    ray.get([a.pid.remote() for a in actors])  # each has loaded its model
    start_s = time.perf_counter() - t
    report = ingest_on_cluster(coll, embedder_factory(svc), [files], config=config, workers=actors)
    for actor in actors:
        ray.kill(actor)
    row = {"mode": "ray", "workers": workers, "cpus_per_worker": cpus, "start_s": round(start_s, 2),
           "seconds": round(report.seconds, 2), **_sizes(svc, "bench"), "load": load()}
    svc.close()
    return row


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _closed_loop(url: str, bodies: list[dict[str, Any]], path: str, clients: int,
                 seconds: float | None, count: int | None) -> tuple[int, float]:
    """(requests answered, seconds) from `clients` threads sending `bodies` in turn, for `seconds`
    or until `count` requests are done."""
    done, lock, stop_at = [0], threading.Lock(), time.monotonic() + (seconds or 1e9)
    taken = [0]

    def client() -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            while time.monotonic() < stop_at:
                with lock:
                    if count is not None and taken[0] >= count:
                        return
                    body = bodies[taken[0] % len(bodies)]
                    taken[0] += 1
                r = http.post(path, json=body)
                r.raise_for_status()
                with lock:
                    done[0] += 1

    t = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return done[0], time.perf_counter() - t


def serve_rates(data_dir: Path, replicas: int, queries: list[str], seconds: float,
                asks: int) -> dict[str, Any]:
    from api import cluster as on_cluster
    from api.services import Services
    from cluster.serve import shutdown

    settings = Settings(data_dir=data_dir, port=_free_port(), max_new_tokens=32)
    url = f"http://127.0.0.1:{settings.port}"
    Services(settings).generator_path()  # `ragtune models prepare`: once, not in each replica
    t = time.perf_counter()
    on_cluster.serve(settings, "local", replicas)
    try:
        warm = [{"question": q} for q in queries[:replicas * 2]]
        _closed_loop(url, warm, "/v1/collections/bench/ask", replicas * 2, None, len(warm))
        start_s = time.perf_counter() - t
        search = [{"query": q, "k": 5} for q in queries]
        n, s = _closed_loop(url, search, "/v1/collections/bench/search", 2 * replicas, seconds, None)
        asked = [{"question": q} for q in queries[replicas * 2:]]
        a, sa = _closed_loop(url, asked, "/v1/collections/bench/ask", 2 * replicas, None, asks)
    finally:
        shutdown()
    return {"replicas": replicas, "start_and_warm_s": round(start_s, 1),
            "searches_per_s": round(n / s, 1), "asks_per_s": round(a / sa, 3), "asks": a,
            "load": load()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=600)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-bench-cluster"))
    p.add_argument("--skip-serve", action="store_true")
    p.add_argument("--serve-seconds", type=float, default=10.0)
    p.add_argument("--asks", type=int, default=6)
    args = p.parse_args()
    import ray

    from cluster.connect import LOCAL, connect

    files = args.data_dir / "files"
    queries = make_files(files, args.docs)
    print(f"{args.docs} files; load average {load()}")
    rows = [ingest_local(args.data_dir / "local", files)]
    connect(LOCAL, num_cpus=CPUS)
    rows.append(ingest_ray(args.data_dir / "ray1", files, 1, 2.0))
    rows.append(ingest_ray(args.data_dir / "ray2", files, 2, 1.0))
    local = rows[0]["chunks"] / rows[0]["seconds"]
    for row in rows:
        row["chunks_per_s"] = round(row["chunks"] / row["seconds"], 1)
        row["chunks_per_s_per_worker"] = round(row["chunks_per_s"] / max(row["workers"], 1), 1)
        row["vs_local"] = round(row["chunks_per_s"] / local, 3)
        print(f"  {row['mode']:<5} workers={row['workers']} cpus/worker={row['cpus_per_worker']}  "
              f"{row['chunks']} chunks in {row['seconds']:.1f} s = {row['chunks_per_s']} chunks/s "
              f"({row['vs_local']:.2f} x local; start {row['start_s']} s)  docstore "
              f"{row['docstore_bytes_per_chunk']} B/chunk, index {row['index_bytes_per_chunk']} "
              f"B/chunk  [load {row['load']}]")
    ok = rows[1]["vs_local"] >= BOUND
    print(f"bound: 1 Ray worker >= {BOUND} x local chunks/s: {rows[1]['vs_local']:.2f} "
          f"({'met' if ok else 'NOT met'})")
    serving = []
    if not args.skip_serve:
        for replicas in (1, 2):
            row = serve_rates(args.data_dir / "local", replicas, queries, args.serve_seconds,
                              args.asks)
            serving.append(row)
            print(f"  serve replicas={replicas}: {row['searches_per_s']} searches/s, "
                  f"{row['asks_per_s']} asks/s ({row['asks']} asks; start+warm "
                  f"{row['start_and_warm_s']} s)  [load {row['load']}]")
    ray.shutdown()
    write("cluster", {"docs": args.docs, "bound_vs_local": BOUND, "bound_met": ok,
                      "ingest": rows, "serve": serving})


if __name__ == "__main__":
    main()
