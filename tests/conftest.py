"""Test-wide fixtures: no network, a fake embedder for unit tests, the real embedder once per session."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from generation.models import ModelRegistry, packaged_gguf
from tests.fakes import FakeEmbedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LOOPBACK = ("127.", "::1", "localhost")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connection that is not to this machine: tests must be offline."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family == socket.AF_UNIX or str(host).startswith(LOOPBACK):
            return real_connect(self, address)  # type: ignore[arg-type]
        raise OSError(f"network access blocked in tests: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _cli_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI commands work in-process unless a test names a server: one the developer happens to be
    running on the default port must not answer them."""
    monkeypatch.setenv("RAGTUNE_URL", "local")
    monkeypatch.delenv("RAGTUNE_API_KEY", raising=False)


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture(scope="session")
def real_embedder() -> Iterator[object]:
    from retrieval.embedder import SentenceTransformerEmbedder

    yield SentenceTransformerEmbedder(device="cpu")


def shared_data(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"{path} is not present (shared data is only beside the developer checkout)")
    return path


@dataclass
class ImportedModel:
    registry: ModelRegistry
    path: Path
    seconds: float
    messages: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def imported_model(tmp_path_factory: pytest.TempPathFactory) -> ImportedModel:
    try:
        packaged_gguf()
    except Exception as exc:  # the package is part of `make install`; say so instead of failing
        pytest.skip(str(exc))
    registry = ModelRegistry(tmp_path_factory.mktemp("models"))
    messages: list[str] = []
    started = time.perf_counter()
    path = registry.ensure_default(progress=messages.append)
    return ImportedModel(registry, path, time.perf_counter() - started, messages)


@pytest.fixture(scope="session")
def lora_dirs(imported_model: ImportedModel,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different random LoRA adapters for the packaged SmolLM2 (peft format, unregistered)."""
    from tests.helpers import make_lora

    root = tmp_path_factory.mktemp("loras")
    return (make_lora(imported_model.path, root / "lora-1", seed=1),
            make_lora(imported_model.path, root / "lora-2", seed=2))
