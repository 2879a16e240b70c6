"""Wiring for the cluster flows: Settings and a Corpus turned into the cluster package's calls.

Imported only when a command is given a cluster (`--cluster` or RAGTUNE_CLUSTER), and it imports
Ray only through `cluster`, inside the calls: `ragtune` without a cluster never loads Ray.
"""

from __future__ import annotations

import functools
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.pipeline import FileResult, IngestReport
from retrieval.embedder import Embedder, SentenceTransformerEmbedder
from retrieval.errors import EmbedderMismatch

from .corpus import Corpus
from .settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tuning.base import Trainer

    from .services import Services

# POSTs that only read: answered by any replica; every other POST, PUT, PATCH or DELETE writes
READ_POSTS = re.compile(r"^/v1/(?:collections/[^/]+/(?:search|ask)|chat/completions|embeddings"
                        r"|classifiers/[^/]+/predict)/?$")


def embedder_factory(corpus: Corpus) -> Callable[[], Embedder]:
    """A picklable recipe for the corpus's embedder, for each cluster worker to make its own: the
    one Settings name, or a copy of the one the corpus was given (tests)."""
    given = corpus.given_embedder
    if given is not None:
        return functools.partial(_same, given)
    s = corpus.settings
    return functools.partial(SentenceTransformerEmbedder, s.embedder, device=s.torch_device,
                             batch_size=s.embed_batch_size, backend=s.embed_backend,
                             cache_dir=s.data_dir / "embedders")


def _same(embedder: Embedder) -> Embedder:
    return embedder


def join(settings: Settings, address: str) -> None:
    """Join the cluster at `address` (ClusterUnreachable when none answers there)."""
    from cluster.connect import connect

    connect(address, num_cpus=max(settings.cluster_workers, 2))


def ingest_config(settings: Settings) -> Any:
    from cluster.ingest import ClusterIngestConfig

    return ClusterIngestConfig(workers=settings.cluster_workers,
                               cpus_per_worker=settings.cluster_cpus_per_worker,
                               gpus_per_worker=settings.cluster_gpus_per_worker)


def job_ingest(corpus: Corpus) -> Callable[..., IngestReport]:
    """`ingest_paths` for the server's upload jobs, run on the cluster RAGTUNE_CLUSTER: the same
    arguments (the embedder given is not used: each worker makes its own)."""
    settings = corpus.settings

    def run(collection: Any, embedder: Embedder, paths: list[Path],
            metadata: dict[str, Any] | None = None, **options: Any) -> IngestReport:
        from cluster.ingest import ingest_on_cluster

        join(settings, settings.cluster)
        return ingest_on_cluster(collection, embedder_factory(corpus), paths, metadata,
                                 config=ingest_config(settings), **options)

    return run


def ingest(corpus: Corpus, name: str, paths: list[Path], metadata: dict[str, Any] | None,
           on_result: Callable[[FileResult], None] | None, address: str) -> IngestReport:
    """`Corpus.ingest_paths` with the work done on the cluster at `address`; this process commits."""
    from cluster.ingest import ingest_on_cluster

    s = corpus.settings
    collection = corpus.catalog.get(name)
    wanted = corpus.given_embedder.name if corpus.given_embedder is not None else s.embedder
    if collection.config.embedder != wanted:
        raise EmbedderMismatch(
            f"collection {name!r} was built with embedder {collection.config.embedder!r} but "
            f"ragtune is running {wanted!r}; set RAGTUNE_EMBEDDER back or ingest into a new collection")
    join(s, address)
    return ingest_on_cluster(collection, embedder_factory(corpus), paths, metadata,
                             config=ingest_config(s),
                             archive_limits=corpus.archive_limits, file_limits=corpus.file_limits,
                             on_result=on_result)


def trainer_factory(settings: Settings) -> Callable[[str], Trainer]:
    """The tuning worker's trainers on the cluster RAGTUNE_CLUSTER: every job trains through Ray
    Train (the HF Trainer path, DDP over RAGTUNE_TRAIN_WORKERS), whichever trainer it names."""

    def make(name: str) -> Trainer:
        from cluster.train import RayTrainer

        join(settings, settings.cluster)
        return RayTrainer(settings.train_workers, use_gpu=settings.cluster_gpus_per_worker > 0)

    return make


def is_write(method: str, path: str) -> bool:
    """Whether a request changes something, and so goes to the one writer."""
    return method not in ("GET", "HEAD", "OPTIONS") and READ_POSTS.match(path) is None


def build_app(settings: Settings, writer: bool,
              services: Callable[[Settings], Services] | None = None) -> FastAPI:
    """The API of one replica (`services`: how to make its Services; tests give fakes)."""
    from .app import create_app

    return create_app(settings, services(settings) if services is not None else None, writer=writer)


def serve(settings: Settings, address: str, replicas: int,
          services: Callable[[Settings], Services] | None = None) -> None:
    """Deploy the API on the cluster at `address`: `replicas` readers and one writer behind Ray
    Serve's proxy on RAGTUNE_HOST:RAGTUNE_PORT, all on the same data directory."""
    from cluster.serve import ServeConfig, deploy

    join(settings, address)
    config = ServeConfig(replicas=replicas, max_replicas=settings.serve_max_replicas,
                         max_queued=settings.serve_max_queued,
                         gpus_per_replica=settings.cluster_gpus_per_worker,
                         host=settings.host, port=settings.port)
    deploy(functools.partial(build_app, settings, False, services),
           functools.partial(build_app, settings, True, services), is_write, config)


def serve_forever(settings: Settings, address: str, replicas: int) -> None:
    """`ragtune serve --cluster`: deploy, then hold the deployments until interrupted."""
    from cluster.serve import shutdown

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM (a service manager) stops it as Ctrl-C does

    serve(settings, address, replicas)
    signal.signal(signal.SIGTERM, stop)  # after joining: Ray installs a handler of its own that aborts
    print(f"ragtune: serving {replicas} replica(s) on http://{settings.host}:{settings.port} "
          f"(Ray cluster {address}); Ctrl-C stops them", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        shutdown()
