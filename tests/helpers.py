"""Small builders shared by tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ingest.chunking import Chunker, ChunkingConfig
from ingest.pipeline import IngestPipeline
from ingest.types import LoadedDocument, Page
from retrieval.catalog import Catalog
from retrieval.collection import Collection, CollectionConfig
from tests.fakes import FakeEmbedder

# the address `make run` serves; TestClient's default host ("testserver") is not an allowed Host
LOCAL_URL = "http://127.0.0.1:8000"


def make_collection(root: Path, embedder: FakeEmbedder, name: str = "kb",
                    chunk_size: int = 64, chunk_overlap: int = 8) -> Collection:
    config = CollectionConfig(name=name, embedder=embedder.name, dim=embedder.dim,
                              chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    return Catalog(root).create(config)


def pipeline(coll: Collection, embedder: FakeEmbedder, batch_chunks: int = 16) -> IngestPipeline:
    chunker = Chunker(ChunkingConfig(coll.config.chunk_size, coll.config.chunk_overlap),
                      embedder.count_tokens)
    return IngestPipeline(coll, embedder, chunker, batch_chunks=batch_chunks)


def text_doc(source: str, text: str, fmt: str = "txt") -> LoadedDocument:
    return LoadedDocument(source=source, content=text.encode(), pages=[Page(text)], format=fmt)


def make_lora(base_model: Path, out_dir: Path, seed: int) -> Path:
    """An untrained LoRA adapter (rank 4 on q/v projections) with random A and B, so that it
    visibly changes greedy output; saved in peft's format to `out_dir`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False)  # B = 0 would make it a no-op
    get_peft_model(model, config).save_pretrained(str(out_dir))
    return out_dir


@contextmanager
def serving(app: Any, graceful_shutdown_s: int | None = None) -> Iterator[str]:
    """`app` served by uvicorn in a thread on a free loopback port: yields its base URL.
    `graceful_shutdown_s`: how long shutdown waits for open connections (None: for ever)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning",
                                           access_log=False,
                                           timeout_graceful_shutdown=graceful_shutdown_s))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def free_port() -> int:
    """A loopback port nothing listens on (just now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
