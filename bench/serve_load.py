"""Concurrent asks over HTTP: one client alone, then N clients at once, with the answers decoded
together (continuous batching, the default) and one `generate` at a time (RAGTUNE_MAX_BATCH=0),
side by side on the same server data.

Each ask is `POST /v1/collections/{name}/ask` with `stream: true` and `answer_style: span`, so the
first `token` event marks the time to first token as a client sees it (queueing and retrieval
included); the `done` event ends the ask. Questions: the repo's own sample collection
(sample_kb, bench/data/ragtune_docs_questions.jsonl), cycled.

Goals (the issue's): aggregate asks/s with N clients >= 4x one client's, and p95 time to first
token <= 3 s. On a CPU, prefill is compute-bound (README "Generation speed": about 70 % of peak
FLOP/s on one prompt), so N prompts cost N prefills whatever the batching; batching shares the
decode steps, and the rest of an ask (retrieval, the verifier) runs in the clients' own threads.

    python -m bench.serve_load                 # 1 client x 8 asks, 8 clients x 2 asks, both modes
    python -m bench.serve_load --clients 4 --modes 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from .common import write
from .soak_server import Server

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "sample_kb"
QUESTIONS = ROOT / "bench" / "data" / "ragtune_docs_questions.jsonl"
COLLECTION = "load"


def prepare(data_dir: Path) -> None:
    """Models and the sample collection in `data_dir`, once (kept between runs)."""
    env = {**os.environ, "RAGTUNE_DATA_DIR": str(data_dir)}
    ragtune = str(Path(sys.executable).with_name("ragtune"))
    if not (data_dir / "collections" / COLLECTION).exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([ragtune, "models", "prepare"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([ragtune, "ingest", str(DOCS), "-c", COLLECTION, "--create", "--local"],
                       env=env, check=True, stdout=subprocess.DEVNULL)


def ask(url: str, question: str, max_new: int) -> dict[str, Any]:
    """One streamed ask: status, time to first token and total, as the client sees them."""
    body = {"question": question, "k": 5, "stream": True, "answer_style": "span",
            "max_new_tokens": max_new}
    started = time.perf_counter()
    first = None
    with httpx.stream("POST", f"{url}/v1/collections/{COLLECTION}/ask", json=body,
                      timeout=900) as reply:
        if reply.status_code != 200:
            reply.read()
            return {"status": reply.status_code, "total_s": time.perf_counter() - started,
                    "retry_after": reply.headers.get("retry-after")}
        event = None
        for line in reply.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event in ("token", "done") and first is None:
                first = time.perf_counter() - started
            if event == "done" and line.startswith("data: "):
                refused = json.loads(line[6:]).get("refused")
                break
        else:
            refused = None
    total = time.perf_counter() - started
    return {"status": 200, "ttft_s": first if first is not None else total, "total_s": total,
            "refused": refused}


def pct(samples_s: list[float]) -> dict[str, float]:
    """p50 / p95 / p99 in seconds."""
    if not samples_s:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    return {f"p{q}": round(float(np.percentile(samples_s, q)), 3) for q in (50, 95, 99)}


def run_clients(url: str, questions: list[str], clients: int, per_client: int,
                max_new: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(c: int) -> None:
        start.wait()
        for i in range(per_client):
            q = questions[(c * per_client + i) % len(questions)]
            r = ask(url, q, max_new)
            with lock:
                results.append(r)

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    ok = [r for r in results if r["status"] == 200]
    return {
        "clients": clients, "asks": len(results), "ok": len(ok),
        "refused_503": sum(r["status"] == 503 for r in results),
        "wall_s": round(wall, 2), "asks_per_s": round(len(ok) / wall, 4),
        "ttft": pct([r["ttft_s"] for r in ok]),
        "total": pct([r["total_s"] for r in ok]),
        "mean_total_s": round(sum(r["total_s"] for r in ok) / max(1, len(ok)), 3),
        "mean_ttft_s": round(sum(r["ttft_s"] for r in ok) / max(1, len(ok)), 3),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-bench-load"))
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--per-client", type=int, default=2, help="asks per concurrent client")
    p.add_argument("--single", type=int, default=8, help="asks of the one-client run")
    p.add_argument("--max-new", type=int, default=64)
    p.add_argument("--modes", nargs="+", type=int, default=[8, 0],
                   help="RAGTUNE_MAX_BATCH values to run (0 = one generate at a time)")
    args = p.parse_args(argv)
    prepare(args.data_dir)
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines()
                 if line.strip()]
    rows = []
    for mode in args.modes:
        os.environ["RAGTUNE_MAX_BATCH"] = str(mode)
        os.environ["RAGTUNE_GENERATION_QUEUE"] = str(max(32, args.clients * 2))
        server = Server(args.data_dir)
        server.start()
        try:
            ask(server.url, questions[0], args.max_new)  # loads the models
            single = run_clients(server.url, questions, 1, args.single, args.max_new)
            many = run_clients(server.url, questions, args.clients, args.per_client, args.max_new)
        finally:
            server.stop()
        speedup = round(many["asks_per_s"] / single["asks_per_s"], 2)
        row = {"max_batch": mode, "single": single, "concurrent": many,
               "speedup": speedup, "speedup_goal": 4.0,
               "p95_ttft_s": many["ttft"]["p95"], "p95_ttft_goal_s": 3.0}
        rows.append(row)
        print(f"max_batch {mode}: 1 client {single['asks_per_s']:.3f} asks/s (p50 "
              f"{single['total']['p50']:.2f} s, TTFT p50 {single['ttft']['p50']:.2f} s); "
              f"{args.clients} clients {many['asks_per_s']:.3f} asks/s = {speedup}x one client "
              "(goal 4x), "
              f"p50 {many['total']['p50']:.2f} s, TTFT p50 {many['ttft']['p50']:.2f} s p95 "
              f"{many['ttft']['p95']:.2f} s (goal 3 s), 503s {many['refused_503']}", flush=True)
    write("serve_load", {"load_average": os.getloadavg(), "max_new_tokens": args.max_new,
                         "clients": args.clients, "rows": rows})


if __name__ == "__main__":
    main()
