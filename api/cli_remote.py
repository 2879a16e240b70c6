"""Which server a CLI command talks to, and the commands' served paths.

`search`, `ask`, `ingest`, `tune start|resume|list|status|cancel` and `eval answers|calibrate` use
a running `ragtune serve` when one answers, so they take milliseconds instead of a model load, and
writes go through the process that holds the collection open. `--server URL` (or RAGTUNE_URL=URL)
names one and is an error when it does not answer; without it, http://HOST:PORT from Settings is
probed for PROBE_S seconds and in-process work is the fallback; `--local` (or RAGTUNE_URL=local)
never asks.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .client import RagtuneClient, RagtuneError
from .schemas import JobOut
from .settings import Settings

PROBE_S = 0.3  # a loopback server answers /healthz in about a millisecond
EXPLICIT_PROBE_S = 3.0  # a named server may be across a network
POLL_S = 0.5
BATCH_BYTES = 32 * 1024 * 1024  # one upload request stays well under RAGTUNE_MAX_REQUEST_MB
BATCH_FILES = 500


class ServerUnreachable(Exception):
    """The server named by --server or RAGTUNE_URL did not answer."""

    def __init__(self, url: str, why: str = "") -> None:
        super().__init__(f"no ragtune server answers at {url}{': ' + why if why else ''} (start "
                         "one with `ragtune serve`, or use --local to work in-process)")


def add_server_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--server", metavar="URL",
                   help="use the ragtune server at URL (an error when it does not answer; "
                        "default: RAGTUNE_URL, else http://RAGTUNE_HOST:RAGTUNE_PORT when it answers)")
    g.add_argument("--local", action="store_true",
                   help="work in-process even when a server is running (loads the models here)")


def default_url(settings: Settings) -> str:
    host = settings.host
    if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 - an address to reach, not to bind
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def connect(args: argparse.Namespace, settings: Settings) -> RagtuneClient | None:
    """A client of the server this command should use, or None to work in-process."""
    server = getattr(args, "server", None)
    if getattr(args, "local", False) or (server is None and settings.url == "local"):
        return None
    explicit = server or (settings.url if settings.url != "auto" else None)
    url = explicit or default_url(settings)
    client = RagtuneClient(url, api_key=settings.api_key.get_secret_value() or None)
    if client.healthy(EXPLICIT_PROBE_S if explicit else PROBE_S):
        return client
    client.close()
    if explicit:
        raise ServerUnreachable(url)
    return None


def error_message(exc: RagtuneError, url: str) -> str:
    """What to tell the user about an error reply from the server at `url`."""
    if exc.status == 401:
        return (f"the server at {url} needs an API key ({exc.detail}): set RAGTUNE_API_KEY=rt_... "
                "(`ragtune keys create`)")
    if exc.status == 403:
        return f"the server at {url} refused RAGTUNE_API_KEY: {exc.detail}"
    return f"{exc.detail} (server {url}, {exc.status})"


# --- ingest through the server ------------------------------------------------------------------


def files_to_upload(paths: list[Path]) -> list[tuple[str, Path]]:
    """(upload name, path) for every file the paths hold (folders walked like local ingest; the
    server keeps each file's name, not its folder). A missing path raises FileNotFoundError."""
    from ingest.loaders import SUPPORTED_EXTENSIONS

    found: list[tuple[str, Path]] = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(2, "no such file", str(path))
        if path.is_file():
            found.append((path.name, path))
            continue
        for file in sorted(path.rglob("*")):
            parts = file.relative_to(path).parts
            if file.is_file() and not any(p.startswith(".") for p in parts) and \
                    file.name.lower().endswith(tuple(SUPPORTED_EXTENSIONS)):
                found.append((file.name, file))
    return found


def batches(files: list[tuple[str, Path]]) -> Iterator[list[tuple[str, Path]]]:
    """Upload requests: a name at most once in each (the server refuses a repeated one), under
    BATCH_BYTES and BATCH_FILES each (a single larger file goes alone)."""
    pending = list(files)
    while pending:
        batch: list[tuple[str, Path]] = []
        names: set[str] = set()
        size, rest = 0, []
        for name, path in pending:
            nbytes = path.stat().st_size
            fits = not batch or (size + nbytes <= BATCH_BYTES and len(batch) < BATCH_FILES)
            if name in names or not fits:
                rest.append((name, path))
                continue
            batch.append((name, path))
            names.add(name)
            size += nbytes
        yield batch
        pending = rest


def ingest(client: RagtuneClient, args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Upload the paths into the collection and wait for the jobs: (summary, per-file rows) in the
    shape local ingest prints."""
    import json

    from tqdm import tqdm

    _ensure_collection(client, args)
    files = files_to_upload([Path(p) for p in args.paths])
    if not files:
        raise ValueError("no supported files in " + ", ".join(args.paths))
    metadata = json.loads(args.metadata) if args.metadata else None
    start = time.perf_counter()
    jobs: list[JobOut] = []
    with tqdm(total=len(files), unit="doc", disable=args.quiet) as bar:
        for batch in batches(files):
            job = client.upload(args.collection, batch, metadata)
            done = 0
            while job.state in ("queued", "running"):
                time.sleep(POLL_S)
                job = client.ingest_job(job.job_id)
                bar.update(job.files_done - done)
                done = job.files_done
                bar.total = max(bar.total or 0, bar.n)
                chunks = sum(j.chunks_added for j in jobs) + job.chunks_added
                errors = sum(len(j.errors) for j in jobs) + len(job.errors)
                bar.set_postfix({"chunks": chunks, "errors": errors})
            bar.update(job.files_done - done)
            jobs.append(job)
    return _summary(jobs, time.perf_counter() - start)


def _ensure_collection(client: RagtuneClient, args: argparse.Namespace) -> None:
    try:
        client.collection(args.collection)
    except RagtuneError as exc:
        if exc.status != 404:
            raise
        if not args.create:
            raise RagtuneError(404, exc.error, exc.detail + "; add --create to make it") from None
        client.create_collection(args.collection, args.chunk_size, args.chunk_overlap, args.index)


def _summary(jobs: list[JobOut], seconds: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    keys = ("documents", "added", "replaced", "unchanged", "failed", "chunks_added")
    summary: dict[str, Any] = dict.fromkeys(keys, 0)
    files: list[dict[str, Any]] = []
    for job in jobs:
        rows = list(job.results.get("files", []))
        seen = {row["source"] for row in rows}
        # files refused on arrival, or a job that failed before reading them, have only an error
        rows += [{"source": e.source, "status": "failed", "doc_id": None, "chunks": 0,
                  "error": e.reason, "warnings": []} for e in job.errors if e.source not in seen]
        if job.state == "failed" and not rows:
            raise ValueError(f"ingest job {job.job_id} failed: {job.note}")
        files += rows
    for row in files:
        summary[row["status"]] = summary.get(row["status"], 0) + 1
        if row["status"] in ("added", "replaced"):
            summary["chunks_added"] += row["chunks"]
    summary["documents"] = len(files)
    summary["seconds"] = round(seconds, 3)
    summary["chunks_per_s"] = round(summary["chunks_added"] / seconds, 1) if seconds else 0.0
    return summary, files
