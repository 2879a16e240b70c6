"""Soak: mixed load on a loopback `ragtune serve` that is killed with SIGKILL at random moments.

Client threads search, ask, upload documents and submit-then-cancel tuning jobs for `--minutes`; every
60-120 s the server is killed (kill -9; its tuning worker dies with it) and started again on the same
data dir. Then, with no more kills, every upload the server accepted (202) must be one document, present
exactly once with all its chunks and searchable; the collection's counts must match its docstore and,
after a clean shutdown, its vector index; and the server's memory must stay flat within each life.

Bounds: 0 server errors (HTTP 5xx), 0 lost, 0 half and 0 duplicated documents, no tuning job left
queued or running, a clean final shutdown, and RSS growth below 20 % within a life, from the first
sample after warm-up (one search and one ask answered, 10 s settled) to the last before its kill or
the end of the load. Connection errors while the server is down are expected and counted apart; any
other is a failure. The figures go to bench/results/soak.json (`--out`).

Measured (2 shared CPU cores, `python -m bench.soak --minutes 10 --seed 1`, 2026-12-02, with a
fresh-clone CI run beside it): 3,034 requests (search 1,729, upload 880, read 351, ask 38, tuning
dataset/job/cancel 12 each), 0 HTTP 5xx, 8 connection errors while the server was down and 0
otherwise, 0 client timeouts, 4 kills survived (healthy again in 2 s), 880 documents accepted and
checked, 0 lost, 0 half, 0 duplicated; 880 documents / 7,152 chunks over HTTP, in the docstore and in
the index at shutdown; 12 tuning jobs, all cancelled; RSS growth per life +1.3 % to +7.7 %
(1,503-1,693 MiB after warm-up). The run before it found a deadlock: two searches just after a
restart entered OpenVINO together and the server hung for good (the soak's clients waited on their
request timeouts); the encoder now runs one batch at a time (retrieval/embedder_openvino.py).
(2026-11-28, before the OpenVINO embedder: 2,438 requests, 704 documents, the same zeros.)

    python -m bench.soak [--minutes 10] [--data-dir DIR] [--seed N] [--clients 4] [--kill-every 60 120]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .common import write
from .soak_checks import check_documents, check_index, summary_lines
from .soak_server import HEALTH_TIMEOUT_S, Life, Server

COLLECTION = "soak"
RSS_GROWTH_BOUND = 0.20
WARM_SETTLE_S = 10.0
KILL_EVERY_S = (60.0, 120.0)
WORDS = ("invoice receipt payment refund ledger policy audit supplier contract budget travel expense "
         "approval manager quarter report tax deadline account transfer").split()
TUNE_CONFIG = {"max_steps": 3, "batch_size": 1, "grad_accum": 1, "model_max_length": 48,
               "val_fraction": 0.2, "lora_r": 4, "lora_alpha": 8, "num_threads": 1}
CONNECTION_ERRORS = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError,
                     httpx.ConnectTimeout)


@dataclass
class Upload:
    name: str
    code: str
    markers: list[str]
    accepted: bool = False  # the server answered 202
    job_id: str | None = None
    job_state: str | None = None


@dataclass
class Tally:
    """What the clients saw, by kind of request."""

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    expected_conn_errors: int = 0
    other_conn_errors: list[dict[str, Any]] = field(default_factory=list)
    timeouts: list[dict[str, Any]] = field(default_factory=list)
    unexpected_4xx: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Load:
    """The clients' requests, counted in `tally`; uploads and tuning jobs remembered for the checks."""

    def __init__(self, server: Server, seed: int) -> None:
        self.server = server
        self.seed = seed
        self.tally = Tally()
        self.uploads: list[Upload] = []
        self.tuning_jobs: list[str] = []
        self.stop = threading.Event()
        self._ask = threading.Lock()  # one ask at a time: each takes seconds of both cores
        self._tune = threading.Lock()
        self._next_tune = 0.0
        self._n = 0
        self._lock = threading.Lock()

    def serial(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    def call(self, kind: str, method: str, path: str, ok: tuple[int, ...] = (200,),
             timeout: float = 120.0, **kw: Any) -> httpx.Response | None:
        """One request; None when it got no answer (counted as a connection error or a timeout)."""
        if not self.server.up.wait(HEALTH_TIMEOUT_S):
            return None
        generation, started = self.server.generation, time.monotonic()
        with self.tally.lock:
            self.tally.requests[kind] += 1
        try:
            r = httpx.request(method, self.server.url + path, timeout=timeout, **kw)
        except CONNECTION_ERRORS as exc:
            cut = self.server.generation != generation or not self.server.up.is_set()
            with self.tally.lock:
                if cut:
                    self.tally.expected_conn_errors += 1
                else:
                    self.tally.other_conn_errors.append({"kind": kind, "path": path, "error": repr(exc)})
            return None
        except httpx.TimeoutException as exc:
            with self.tally.lock:
                self.tally.timeouts.append({"kind": kind, "path": path, "after_s": round(
                    time.monotonic() - started, 1), "error": repr(exc)})
            return None
        with self.tally.lock:
            self.tally.statuses[f"{kind} {r.status_code}"] += 1
            detail = {"kind": kind, "method": method, "path": path, "status": r.status_code,
                      "body": r.text[:400], "life": len(self.server.lives)}
            if r.status_code >= 500:
                self.tally.server_errors.append(detail)
            elif r.status_code not in ok:
                self.tally.unexpected_4xx.append(detail)
        return r

    # --- the kinds of request ---
    def search(self, rng: random.Random) -> bool:
        done = [u for u in self.uploads if u.job_state == "succeeded"]
        query = rng.choice(rng.choice(done).markers) if done and rng.random() < 0.5 \
            else " ".join(rng.sample(WORDS, 3))
        r = self.call("search", "POST", f"/v1/collections/{COLLECTION}/search",
                      json={"query": query, "k": 5, "mode": rng.choice(["hybrid", "dense", "keyword"])})
        return r is not None and r.status_code == 200

    def ask(self, rng: random.Random, wait: bool = False) -> bool:
        if not self._ask.acquire(blocking=wait):
            return self.search(rng)
        try:
            question = f"What does the {rng.choice(WORDS)} {rng.choice(WORDS)} policy say?"
            r = self.call("ask", "POST", f"/v1/collections/{COLLECTION}/ask", timeout=900,
                          json={"question": question, "k": 3, "max_new_tokens": 24})
            return r is not None and r.status_code == 200
        finally:
            self._ask.release()

    def upload(self, rng: random.Random) -> None:
        n = self.serial()
        code = f"zq{self.seed}x{n:05d}k"
        markers = [f"{code}s{i}" for i in range(rng.randint(3, 14))]
        text = "\n\n".join(f"Note {m}: the {' '.join(rng.choices(WORDS, k=rng.randint(8, 24)))}."
                           for m in markers)
        up = Upload(f"soak-{self.seed}-{n:05d}.txt", code, markers)
        self.uploads.append(up)
        r = self.call("upload", "POST", f"/v1/collections/{COLLECTION}/documents", ok=(202,),
                      files={"files": (up.name, text.encode(), "text/plain")})
        if r is not None and r.status_code == 202:
            up.accepted, up.job_id = True, r.json()["job_id"]

    def tune(self, rng: random.Random) -> None:
        """Upload a tiny dataset, submit a short job, cancel it a few seconds later."""
        with self._tune:
            busy = time.monotonic() < self._next_tune
            if not busy:
                self._next_tune = time.monotonic() + 45.0
        if busy:  # one tuning job every 45 s at most: each worker loads the model
            self.upload(rng)
            return
        n = self.serial()
        rows = "".join(f'{{"instruction": "Name item {i}.", "output": "Item {i} {n}."}}\n' for i in range(8))
        r = self.call("tune: dataset", "POST", "/v1/tuning/datasets", ok=(201,),
                      files={"file": (f"d{n}.jsonl", rows.encode(), "application/jsonl")})
        if r is None or r.status_code != 201:
            return
        r = self.call("tune: job", "POST", "/v1/tuning/jobs", ok=(201,), timeout=300,
                      json={"name": f"soak-{self.seed}-{n}", "dataset_id": r.json()["id"],
                            "config": TUNE_CONFIG})
        if r is None or r.status_code != 201:
            return
        job_id = r.json()["job_id"]
        self.tuning_jobs.append(job_id)
        time.sleep(rng.uniform(0.5, 15.0))
        self.call("tune: cancel", "POST", f"/v1/tuning/jobs/{job_id}/cancel", ok=(200, 409))

    def read(self, rng: random.Random) -> None:
        if rng.random() < 0.5:
            self.call("read", "GET", f"/v1/collections/{COLLECTION}")
        else:
            self.call("read", "GET", f"/v1/collections/{COLLECTION}/documents?limit=20")

    def client(self, number: int) -> None:
        rng = random.Random(self.seed * 1000 + number)
        kinds = [(self.search, 0.50), (self.upload, 0.25), (self.read, 0.12), (self.ask, 0.08),
                 (self.tune, 0.05)]
        while not self.stop.is_set():
            op = rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]
            op(rng)
            time.sleep(rng.uniform(0.05, 0.5))


def prepare(data_dir: Path, model_cache: Path) -> None:
    """A fresh data dir holding the packaged generator (imported once into `model_cache`, then
    hard-linked), so no life spends minutes importing it."""
    from generation.models import DEFAULT_MODEL, ModelRegistry

    source = ModelRegistry(model_cache).ensure_default()
    target = data_dir / "models" / DEFAULT_MODEL
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(source, target, copy_function=os.link)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)


def warm_up(load: Load, life: Life, rng: random.Random) -> None:
    """One search and one ask answered in this life, then a short settle: the first RSS sample
    after that is the life's baseline."""
    searched = any(load.search(rng) for _ in range(5))
    asked = any(load.ask(rng, wait=True) for _ in range(3))
    if searched and asked and load.server.lives[-1] is life and load.server.up.is_set():
        life.warm_at = time.monotonic() + WARM_SETTLE_S


def seed_collection(load: Load, rng: random.Random) -> None:
    r = load.call("setup", "POST", "/v1/collections", ok=(201,),
                  json={"name": COLLECTION, "chunk_size": 48, "chunk_overlap": 8})
    if r is None or r.status_code != 201:
        raise RuntimeError(f"could not create the collection: {r and r.text}")
    for _ in range(4):
        load.upload(rng)
    settle_ingest(load, 300)


def settle_ingest(load: Load, timeout: float) -> None:
    """Wait until every accepted upload's job is final (they resume after a restart)."""
    deadline = time.monotonic() + timeout
    for up in load.uploads:
        while up.accepted and up.job_state not in ("succeeded", "failed", "interrupted"):
            r = load.call("settle", "GET", f"/v1/ingest-jobs/{up.job_id}")
            if r is not None and r.status_code == 200:
                up.job_state = r.json()["state"]
            if time.monotonic() > deadline:
                return
            if up.job_state not in ("succeeded", "failed", "interrupted"):
                time.sleep(0.5)


def settle_tuning(load: Load, timeout: float) -> Counter[str]:
    deadline = time.monotonic() + timeout
    while True:
        r = load.call("settle", "GET", "/v1/tuning/jobs")
        # every job in this fresh data dir, also those whose submit answer a kill cut off
        states = Counter(j["state"] for j in (r.json() if r is not None and r.status_code == 200 else []))
        if time.monotonic() > deadline or not (states["queued"] or states["running"]):
            return states
        time.sleep(2)


def sampler(server: Server, done: threading.Event) -> None:
    while not done.wait(2.0):
        server.sample_rss()


def drive(load: Load, args: argparse.Namespace, rng: random.Random) -> list[dict[str, float]]:
    """The load phase: clients for `args.minutes`, the server killed every `args.kill_every`
    seconds (after each life's warm-up) and started again; the kills."""
    server, kills = load.server, []
    started = time.monotonic()
    end = started + args.minutes * 60
    clients = [threading.Thread(target=load.client, args=(i,), daemon=True) for i in range(args.clients)]
    for t in clients:
        t.start()
    warm_up(load, server.lives[-1], rng)
    while (wait := min(rng.uniform(*args.kill_every), end - time.monotonic())) > 5:
        time.sleep(wait)
        if time.monotonic() >= end - 5:
            break
        server.sample_rss()
        server.kill()
        at = time.monotonic() - started
        life = server.start()
        kills.append({"at_s": round(at, 1), "back_after_s": life.healthy_after_s})
        print(f"[{at:6.0f} s] killed life {life.number - 1}; life {life.number} healthy after "
              f"{life.healthy_after_s} s", flush=True)
        warm_up(load, life, rng)
    server.sample_rss()
    load.stop.set()
    for t in clients:
        t.join(timeout=900)
    return kills


def soak(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="ragtune-soak-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    prepare(data_dir, args.model_cache)
    server = Server(data_dir)
    load = Load(server, args.seed)
    sampling = threading.Event()
    try:
        server.start()
        threading.Thread(target=sampler, args=(server, sampling), daemon=True).start()
        seed_collection(load, rng)
        started = time.monotonic()
        kills = drive(load, args, rng)
        sampling.set()  # the lives' memory is that under load
        load_s = time.monotonic() - started
        settle_ingest(load, 900)
        tuning_states = settle_tuning(load, 600)
        documents = check_documents(load, COLLECTION)
        clean = server.stop()
        index = check_index(data_dir, COLLECTION)
    finally:
        sampling.set()
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
    tally = load.tally
    return {
        "minutes": args.minutes, "seed": args.seed, "clients": args.clients, "data_dir": str(data_dir),
        "load_seconds": round(load_s, 1), "requests": dict(tally.requests), "statuses": dict(tally.statuses),
        "server_errors": tally.server_errors, "expected_connection_errors": tally.expected_conn_errors,
        "other_connection_errors": tally.other_conn_errors, "timeouts": tally.timeouts,
        "unexpected_4xx": tally.unexpected_4xx, "kills": kills, "clean_shutdown": clean,
        "tuning_jobs": dict(tuning_states), "documents": documents, "index": index,
        "lives": [{**{k: v for k, v in asdict(life).items() if k != "rss_kb"},
                   "rss_span_kb": life.rss_span(), "rss_samples": len(life.rss_kb)}
                  for life in server.lives],
        "bounds": {"server_errors": 0, "other_connection_errors": 0, "lost": 0, "half": 0,
                   "duplicated": 0, "tuning_jobs_unfinished": 0, "rss_growth": RSS_GROWTH_BOUND},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--data-dir", type=Path, help="a fresh temporary folder by default")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--kill-every", type=float, nargs=2, default=KILL_EVERY_S, metavar=("MIN_S", "MAX_S"),
                   help="seconds between kills, drawn uniformly")
    p.add_argument("--model-cache", type=Path, default=Path(tempfile.gettempdir()) / "ragtune-models",
                   help="where the packaged generator is imported once, for every soak")
    p.add_argument("--out", default="soak")
    args = p.parse_args()
    result = soak(args)
    lines, ok = summary_lines(result)
    print("\n".join(lines))
    write(args.out, {**result, "within_bounds": ok})
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
