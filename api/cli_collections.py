"""`ragtune collections list|create|delete|reindex` and `ragtune ingest PATH... -c NAME`.

Ingest goes through a running server when one answers (api/cli_remote.py), else in-process or, with
`--cluster`, on a Ray cluster with this process committing; domain errors raise to `cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from retrieval.errors import CollectionNotFound
from retrieval.index import INDEXES

from .cli_remote import add_server_options, connect
from .cli_services import open_corpus
from .settings import Settings

INDEX_HELP = f"vector index: {', '.join(sorted(INDEXES))} (default: RAGTUNE_INDEX)"


def add_parser(subparsers: Any) -> None:
    c = subparsers.add_parser("collections", help="list, create or delete collections")
    c.add_argument("action", nargs="?", default="list",
                   choices=["list", "create", "delete", "reindex"],
                   help="reindex: rebuild NAME's index as --index TYPE from its stored embeddings")
    c.add_argument("name", nargs="?")
    c.add_argument("--chunk-size", type=int)
    c.add_argument("--chunk-overlap", type=int)
    c.add_argument("--index", help=INDEX_HELP)
    c.set_defaults(func=cmd_collections)

    i = subparsers.add_parser("ingest", help="ingest files, directories or .zip archives")
    i.add_argument("paths", nargs="+")
    i.add_argument("-c", "--collection", required=True)
    i.add_argument("--create", action="store_true",
                   help="create the collection if it does not exist (else that is an error)")
    i.add_argument("--chunk-size", type=int, help="for a new collection (tokens)")
    i.add_argument("--chunk-overlap", type=int, help="for a new collection (tokens)")
    i.add_argument("--index", help="for a new collection: " + INDEX_HELP)
    i.add_argument("--metadata", help="JSON object stored on every document")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    i.add_argument("--cluster", metavar="ADDRESS", help="read, chunk and embed on the Ray cluster "
                   "at HOST:PORT (or `local`), this process committing (default: RAGTUNE_CLUSTER)")
    add_server_options(i)
    i.set_defaults(func=cmd_ingest)


def cmd_collections(args: argparse.Namespace, settings: Settings) -> int:
    svc = open_corpus(settings)
    if args.action == "create":
        coll = svc.create_collection(args.name, args.chunk_size, args.chunk_overlap, args.index)
        print(f"created {coll.name} (chunk_size={coll.config.chunk_size}, "
              f"overlap={coll.config.chunk_overlap}, index={coll.config.index_type})")
    elif args.action == "delete":
        svc.catalog.delete(args.name)
        print(f"deleted {args.name}")
    elif args.action == "reindex":
        if not args.index:
            raise ValueError("collections reindex needs --index TYPE: " + INDEX_HELP)
        built = svc.catalog.reindex(args.name, args.index)
        recall = "n/a (empty)" if built.recall is None else f"{built.recall:.4f}"
        print(f"reindexed {args.name} as {args.index} from its stored embeddings: {built.chunks} "
              f"chunks in {built.build_s:.1f} s; recall@{built.k} {recall} against exact search "
              f"({built.queries} stored vectors as queries)")
    else:
        for name in svc.catalog.names():
            coll = svc.catalog.get(name)
            stats = coll.stats()
            print(f"{name}\t{stats['documents']} documents\t{stats['chunks']} chunks")
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from . import cli_remote

    cluster = args.cluster or settings.cluster
    if cluster:  # before anything is written: an unreachable cluster is an error, not a hang
        from . import cluster as on_cluster

        on_cluster.join(settings, cluster)
    client = None if cluster else connect(args, settings)  # on a cluster this process is the writer
    if client is not None:
        summary, files = cli_remote.ingest(client, args)
    else:
        summary, files = _ingest_here(args, settings, cluster)
    print(f"{args.collection}: {summary['added']} added, {summary['replaced']} replaced, "
          f"{summary['unchanged']} unchanged, {summary['failed']} failed; "
          f"{summary['chunks_added']} chunks in {summary['seconds']:.1f}s "
          f"({summary['chunks_per_s']} chunks/s)")
    for f in files:
        for w in f["warnings"]:
            print(f"  warning: {f['source']}: {w}")
    failures = [f for f in files if f["error"]]
    for f in failures:
        print(f"  error: {f['source']}: {f['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps({**summary, "files": files}))
    return 1 if failures else 0


def _ingest_here(args: argparse.Namespace, settings: Settings,
                 cluster: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from tqdm import tqdm

    from ingest.loaders import count_files

    svc = open_corpus(settings)
    if not svc.catalog.exists(args.collection):
        if not args.create:
            names = svc.catalog.names()
            raise CollectionNotFound(args.collection, hint=(
                f"collections: {', '.join(names)}" if names else "there are no collections yet")
                + "; add --create to make it")
        svc.create_collection(args.collection, args.chunk_size, args.chunk_overlap, args.index)
    metadata = json.loads(args.metadata) if args.metadata else None
    paths = [Path(p) for p in args.paths]
    start, chunks, failures = time.perf_counter(), 0, []
    with tqdm(total=count_files(paths), unit="doc", disable=args.quiet) as bar:
        def on_result(result: Any) -> None:
            nonlocal chunks
            chunks += result.chunks
            if result.error:
                failures.append(result)
            bar.update(1)
            bar.total = max(bar.total or 0, bar.n)
            elapsed = time.perf_counter() - start
            bar.set_postfix(chunks=chunks, chunks_s=f"{chunks / elapsed:.0f}",
                            errors=len(failures))

        if cluster:
            from . import cluster as on_cluster

            report = on_cluster.ingest(svc, args.collection, paths, metadata, on_result, cluster)
        else:
            report = svc.ingest_paths(args.collection, paths, metadata, on_result)
    svc.close()
    summary = report.summary()
    summary.pop("stage_seconds")  # the same keys as through a server
    return summary, [r.to_dict() for r in report.results]
