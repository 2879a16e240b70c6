"""One slow file must not stall the service: pathological files through the real ingest path, each
against its bound, and the latency of a tiny upload to another collection while a slow one runs.

The files are made here, the same on every run: a 20 MB single-line text of sentences, a 2 MB
single line of words alone, an HTML page of 200,000 `&amp;` entities (1 MB), Markdown with 10,000
headers and a Markdown table of 5,000 columns (20 rows). Chunks are counted in the packaged
embedder's tokens (its tokenizer alone is loaded); vectors come from a hashing stand-in unless
--real-embedder, because embedding time is the hardware's (RAGTUNE_MAX_FILE_CHUNKS bounds it) and
on a 2-core CPU it takes minutes per 10,000 chunks.

Per file: seconds (read, chunk, embed, commit), chunks, chunks/s while chunking the first and the
second half of the file (steady: for 1,000 chunks or more, the second at least half the first),
peak RSS growth of a process of its own (sampled every 20 ms). Bounds: seconds within 10 s per MB
(and RAGTUNE_MAX_FILE_SECONDS, 600), chunks within RAGTUNE_MAX_FILE_CHUNKS (100,000), RSS growth
within 64 MiB + 8x the file's size + 4 KiB a chunk (a chunk's text, record and vector are held
until its document is committed). Then an IngestWorker runs the 20 MB file into one collection
and, once it has started, a 40-byte upload into another: with 2 workers (the default) that upload's
latency (upload to succeeded) is bounded by 5 s; with 1 worker, as before, it waits out the slow
job. About 1.5 minutes on 2 idle cores.

    python -m bench.slow_files [--real-embedder] [--data-dir /tmp/ragtune-slow]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from ingest.jobs import IngestWorker
from ingest.loaders import iter_documents
from ingest.pipeline import FileLimits, FileProgress, IngestPipeline
from retrieval.catalog import Catalog
from retrieval.collection import CollectionConfig
from retrieval.embedder import Embedder, packaged_model_dir, token_counter

from .common import write

WORDS = "pump valve water flow pressure tank filter seal motor pipe gauge drain inlet outlet".split()
LIMITS = FileLimits()
SECONDS_PER_MB = 10.0
LATENCY_BOUND_S = 5.0


class HashEmbedder:
    """Vectors from each text's hash (fast, meaningless); token counts from a real tokenizer."""

    name = "hash-stand-in"
    dim = 384

    def __init__(self, count_tokens: Callable[[str], int]) -> None:
        self.count_tokens = count_tokens

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            vec = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(self.dim)
            out[i] = vec / np.linalg.norm(vec)
        return out


def make_files(folder: Path) -> dict[str, Path]:
    rng = random.Random(0)

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    def sentences(size: int) -> str:
        parts, n = [], 0
        while n < size:
            parts.append(words(12).capitalize() + ". ")
            n += len(parts[-1])
        return "".join(parts)

    cols = 5_000
    table = ("| " + " | ".join(f"c{i}" for i in range(cols)) + " |\n|" + "---|" * cols + "\n"
             + "".join("| " + " | ".join(str(r * cols + i) for i in range(cols)) + " |\n"
                       for r in range(20)))
    files = {
        "sentences-20MB-one-line.txt": sentences(20_000_000),
        "words-2MB-one-line.txt": words(400_000),
        "entities-1MB.html": "<html><body><p>" + "&amp;" * 200_000 + "</p></body></html>",
        "headers-10k.md": "".join(f"## Header {i}\n\n{words(8)}.\n\n" for i in range(10_000)),
        "table-5000-columns.md": table,
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    return {name: folder / name for name in files}


class PeakRss:
    """Peak resident memory of this process above its level at the start, sampled every 20 ms."""

    def __enter__(self) -> PeakRss:
        self._proc = psutil.Process()
        self.base = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def halves(marks: list[tuple[float, int]]) -> tuple[float, float]:
    """Chunks/s over the first and the second half of the chunks made."""
    if len(marks) < 3:
        return 0.0, 0.0
    t0, n_end = marks[0][0], marks[-1][1]
    t_mid, n_mid = next((t, n) for t, n in marks if n >= n_end / 2)
    first = n_mid / (t_mid - t0) if t_mid > t0 else 0.0
    second = (n_end - n_mid) / (marks[-1][0] - t_mid) if marks[-1][0] > t_mid else 0.0
    return first, second


def one_file(catalog: Catalog, embedder: Embedder, path: Path) -> dict[str, Any]:
    """`path` through ingest_paths' own steps, with progress heard at every chunk."""
    coll = catalog.create(CollectionConfig(name=path.stem.lower().replace(".", "-"),
                                           embedder=embedder.name, dim=embedder.dim))
    pipeline = IngestPipeline.for_collection(coll, embedder, limits=LIMITS)
    pipeline.progress_every_s = 0.0
    marks: list[tuple[float, int]] = []

    def on_progress(p: FileProgress) -> None:
        if p.embedded == 0:
            marks.append((time.perf_counter(), p.chunks))

    mb = path.stat().st_size / 1e6
    with PeakRss() as rss:
        t = time.perf_counter()
        report = pipeline.run(iter_documents([path]), on_progress=on_progress)
        coll.settle_keyword_index()
        seconds = time.perf_counter() - t
    result = report.results[0]
    first, second = halves(marks)
    row: dict[str, Any] = {
        "file": path.name, "mb": round(mb, 2), "status": result.status, "error": result.error,
        "seconds": round(seconds, 2), "seconds_bound": round(min(SECONDS_PER_MB * max(mb, 1.0),
                                                                 LIMITS.max_seconds), 1),
        "stage_seconds": {k: round(v, 2) for k, v in report.stage_seconds.items()},
        "chunks": result.chunks, "chunks_bound": LIMITS.max_chunks,
        "chunks_per_s_first_half": round(first, 1), "chunks_per_s_second_half": round(second, 1),
        "rss_growth_mib": round(rss.growth_mib, 1),
        "rss_bound_mib": round(64 + (8 * mb * 1e6 + 4096 * result.chunks) / 2**20),
    }
    row["within_bounds"] = (result.status == "added" and row["seconds"] <= row["seconds_bound"]
                            and row["chunks"] <= LIMITS.max_chunks
                            and row["rss_growth_mib"] <= row["rss_bound_mib"]
                            and (second >= first / 2 or len(marks) < 1000))
    return row


def _submit(worker: IngestWorker, collection: str, source: Path) -> str:
    job_id, folder = worker.new_job_dir()
    shutil.copy(source, folder / source.name)
    return worker.submit(job_id, collection, [source.name], {}).id


def _state(worker: IngestWorker, job_id: str) -> Any:
    job = worker.store.get(job_id)
    assert job is not None
    return job


def side_by_side(root: Path, embedder: Embedder, slow_file: Path, workers: int) -> dict[str, Any]:
    catalog = Catalog(root)
    for name in ("slow", "tiny"):
        catalog.create(CollectionConfig(name=name, embedder=embedder.name, dim=embedder.dim))
    tiny_file = root / "tiny.txt"
    tiny_file.write_text("Valves stop water flowing backwards.")
    worker = IngestWorker(root, catalog, lambda: embedder, file_limits=LIMITS, workers=workers)
    worker.start()
    try:
        t_slow = time.perf_counter()
        slow = _submit(worker, "slow", slow_file)
        while _state(worker, slow).current_file is None:
            time.sleep(0.01)
        t = time.perf_counter()
        tiny = _submit(worker, "tiny", tiny_file)
        while _state(worker, tiny).state in ("queued", "running"):
            time.sleep(0.01)
        latency = time.perf_counter() - t
        slow_job = _state(worker, slow)
        still_running, progress = slow_job.state == "running", slow_job.current_chunks_total
        while _state(worker, slow).state in ("queued", "running"):
            time.sleep(0.05)
        slow_s = time.perf_counter() - t_slow
    finally:
        worker.stop()
        catalog.close()
    return {"workers": workers, "tiny_upload_latency_s": round(latency, 2),
            "latency_bound_s": LATENCY_BOUND_S if workers > 1 else None,
            "tiny_state": _state(worker, tiny).state, "slow_still_running": still_running,
            "slow_chunks_made_then": progress, "slow_job_seconds": round(slow_s, 1),
            "within_bounds": workers == 1 or (latency <= LATENCY_BOUND_S and still_running)}


def load_embedder(real: bool) -> Embedder:
    if real:
        from retrieval.embedder import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(device="cpu")
    from transformers import AutoTokenizer

    return HashEmbedder(token_counter(AutoTokenizer.from_pretrained(packaged_model_dir())))


def in_own_process(path: Path, real: bool) -> dict[str, Any]:
    """one_file in a fresh process, so that each file's RSS growth is its own."""
    command = [sys.executable, "-m", "bench.slow_files", "--one", str(path)]
    done = subprocess.run(command + (["--real-embedder"] if real else []), capture_output=True,
                          text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real-embedder", action="store_true", help="embed with the packaged model")
    p.add_argument("--data-dir", type=Path, default=None, help="scratch folder (default: a temp)")
    p.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # a file, in a process of its own
    args = p.parse_args()
    if args.one:
        catalog = Catalog(args.one.parent / f"one-{args.one.stem}")
        print(json.dumps(one_file(catalog, load_embedder(args.real_embedder), args.one)))
        catalog.close()
        return
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="ragtune-slow-"))
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    files = make_files(root)
    rows = []
    print(f"{'file':30} {'MB':>6} {'s':>7} {'bound':>6} {'chunks':>7} {'ch/s 1st':>9} "
          f"{'ch/s 2nd':>9} {'RSS+MiB':>8} {'bound':>6}  ok")
    for path in files.values():
        row = in_own_process(path, args.real_embedder)
        rows.append(row)
        print(f"{row['file']:30} {row['mb']:6.2f} {row['seconds']:7.2f} {row['seconds_bound']:6.0f} "
              f"{row['chunks']:7d} {row['chunks_per_s_first_half']:9.0f} "
              f"{row['chunks_per_s_second_half']:9.0f} {row['rss_growth_mib']:8.1f} "
              f"{row['rss_bound_mib']:6d}  {'yes' if row['within_bounds'] else 'NO'}"
              + (f"  {row['error']}" if row['error'] else ""))
    embedder = load_embedder(args.real_embedder)
    sides = []
    for workers in (2, 1):
        side = side_by_side(root / f"side-by-side-{workers}", embedder,
                            files["sentences-20MB-one-line.txt"], workers)
        sides.append(side)
        bound = f"bound {LATENCY_BOUND_S} s" if workers > 1 else "no bound: it queues"
        print(f"{workers} worker(s): a tiny upload to another collection while the 20 MB file "
              f"ran took {side['tiny_upload_latency_s']} s ({bound}); the 20 MB job still "
              f"running then: {side['slow_still_running']}, it took {side['slow_job_seconds']} s"
              f"  {'yes' if side['within_bounds'] else 'NO'}")
    write("slow_files", {"embedder": embedder.name, "files": rows, "side_by_side": sides,
                         "all_within_bounds": all(r["within_bounds"] for r in rows + sides)})
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
