"""Ingest on the session's local Ray cluster: the same collection as a local ingest, and a worker
killed mid-ingest costs a retry, never a half document or a duplicate."""

from __future__ import annotations

import os
import signal
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.pipeline import FileResult, ingest_paths
from retrieval.catalog import Catalog
from retrieval.collection import Collection, CollectionConfig
from retrieval.embedder import Embedder
from tests.cluster.fixtures import SlowEmbedder, make_corpus
from tests.fakes import FakeEmbedder

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _collection(root: Path, embedder: Embedder, name: str = "kb") -> Collection:
    return Catalog(root).create(CollectionConfig(name=name, embedder=embedder.name, dim=embedder.dim,
                                                 chunk_size=48, chunk_overlap=8))


def _snapshot(coll: Collection) -> tuple[list[tuple[int, str, str]], np.ndarray]:
    """Every chunk as (id, doc id, text), in id order, and their embeddings."""
    refs = coll.chunk_refs()
    ids = [i for i, _ in refs]
    rows = coll.docstore.chunks_by_id(ids)
    vectors = {int(i): v for got, block in coll.docstore.embeddings(np.array(ids), coll.config.dim)
               for i, v in zip(got, block, strict=True)}
    return ([(i, doc, rows[i]["text"]) for i, doc in refs],
            np.stack([vectors[i] for i in ids]))


def _statuses(results: list[FileResult]) -> dict[str, str]:
    return {r.source: r.status for r in results}


def test_a_cluster_ingest_equals_a_local_one(tmp_path: Path, real_embedder: Any) -> None:
    """The real embedder in the actor, so the vectors are compared within a tolerance (batches are
    composed differently); two workers, in order, are the next test's."""
    import ray

    from cluster.ingest import ClusterIngestConfig, ingest_on_cluster, start_workers
    from retrieval.embedder import SentenceTransformerEmbedder

    docs = make_corpus(tmp_path / "docs", files=6)
    local = _collection(tmp_path / "local", real_embedder)
    expected = ingest_paths(local, real_embedder, [docs])
    remote = _collection(tmp_path / "cluster", real_embedder)
    config = ClusterIngestConfig(workers=1, call_bytes=4096)
    make = partial(SentenceTransformerEmbedder, device="cpu")
    workers = start_workers(make, remote, config)
    try:
        got = ingest_on_cluster(remote, make, [docs], config=config, workers=workers)
        again = ingest_on_cluster(remote, make, [docs], config=config, workers=workers)
    finally:
        for worker in workers:
            ray.kill(worker)

    assert _statuses(got.results) == _statuses(expected.results)
    assert got.summary()["failed"] == 1 and got.chunks_added == expected.chunks_added > 25
    local_chunks, local_vectors = _snapshot(local)
    cluster_chunks, cluster_vectors = _snapshot(remote)
    assert cluster_chunks == local_chunks, "same chunk ids, documents and texts"
    np.testing.assert_allclose(cluster_vectors, local_vectors, atol=1e-4)
    assert again.count("unchanged") == expected.count("added") and again.chunks_added == 0


def test_a_worker_killed_mid_ingest_loses_nothing(tmp_path: Path) -> None:
    import ray

    from cluster.ingest import ClusterIngestConfig, ingest_on_cluster, start_workers

    docs = make_corpus(tmp_path / "docs", files=16)
    local = _collection(tmp_path / "local", FakeEmbedder())
    ingest_paths(local, FakeEmbedder(), [docs])
    remote = _collection(tmp_path / "cluster", FakeEmbedder())
    config = ClusterIngestConfig(workers=2, call_bytes=2048)
    workers = start_workers(SlowEmbedder, remote, config)
    victim = ray.get(workers[0].pid.remote())
    done: list[FileResult] = []
    report: list[Any] = []
    run = threading.Thread(target=lambda: report.append(ingest_on_cluster(
        remote, SlowEmbedder, [docs], config=config, on_result=done.append, workers=workers)))
    run.start()
    deadline = time.monotonic() + 30
    while not done and time.monotonic() < deadline:  # the first call is back: the others are queued
        time.sleep(0.05)
    os.kill(victim, signal.SIGKILL)
    run.join(timeout=120)
    restarted = ray.get(workers[0].pid.remote())
    for worker in workers:
        ray.kill(worker)

    assert report, "the ingest finished"
    assert restarted != victim, "Ray restarted the killed worker"
    assert report[0].summary()["failed"] == 1, [r for r in report[0].results if r.error]
    local_chunks, local_vectors = _snapshot(local)
    cluster_chunks, cluster_vectors = _snapshot(remote)
    assert cluster_chunks == local_chunks, "every document whole, none twice"
    np.testing.assert_allclose(cluster_vectors, local_vectors, atol=1e-6)
    assert remote.stats() == local.stats()


def test_workers_that_do_not_fit_the_cluster_are_an_error_not_a_wait(tmp_path: Path) -> None:
    from cluster.errors import ClusterError
    from cluster.ingest import ClusterIngestConfig, ingest_on_cluster

    remote = _collection(tmp_path / "cluster", FakeEmbedder())
    with pytest.raises(ClusterError, match="do not fit"):
        ingest_on_cluster(remote, FakeEmbedder, [make_corpus(tmp_path / "docs", files=1)],
                          config=ClusterIngestConfig(workers=64))
