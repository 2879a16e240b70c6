"""Generation fixtures: the packaged GGUF imported once per session, and models loaded from it once.

The import (GGUF → model directory) is the slow step, so it happens a single time, into a
session-scoped temporary registry that every generation test shares.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from generation.generator import HFGenerator
from generation.loading import LoadConfig, LoadedModel, load_model
from tests.conftest import ImportedModel


@pytest.fixture(scope="session")
def bf16_model(imported_model: ImportedModel) -> LoadedModel:
    """The fastest dtype on CPU; used where the test is about streaming, not quantisation."""
    return load_model(str(imported_model.path), LoadConfig(quantization="bf16", device="cpu"))


@pytest.fixture(scope="session")
def nf4_model(imported_model: ImportedModel) -> LoadedModel:
    return load_model(str(imported_model.path), LoadConfig(quantization="nf4", device="cpu"))


@pytest.fixture
def hf_generator(bf16_model: LoadedModel) -> Iterator[HFGenerator]:
    """One `model.generate` at a time (max_batch 0); the batching engine: test_batching.py."""
    gen = HFGenerator(bf16_model, max_batch=0)
    yield gen
    assert not gen._lock.locked(), "a test left the model lock held"


@pytest.fixture
def batched_generator(bf16_model: LoadedModel) -> Iterator[HFGenerator]:
    """The default: answers decoded together by the batching engine."""
    gen = HFGenerator(bf16_model)
    assert gen.engine is not None
    yield gen
    assert gen.engine.running == 0 and gen.engine.waiting == 0, "a test left rows in the engine"
    assert not gen._lock.locked(), "a test left the model lock held"
