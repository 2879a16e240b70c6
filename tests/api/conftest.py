"""An app wired with the fake embedder and a temporary data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import Services
from api.settings import Settings
from tests.fakes import FakeEmbedder
from tests.helpers import LOCAL_URL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", max_upload_mb=0.01, chunk_size=64,
                    chunk_overlap=8)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    services = Services(settings, embedder=FakeEmbedder())
    with TestClient(create_app(settings, services), base_url=LOCAL_URL) as c:
        yield c
