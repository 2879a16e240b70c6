"""Tuning fixtures: the packaged SmolLM2 imported once per session (as tests/generation does), its
tokenizer, and a tiny alpaca dataset to train on for a step or two."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ImportedModel

TINY = [
    ("Say hello.", "Hello!"), ("What is 2+2?", "4"), ("Name a colour.", "Blue."),
    ("Capital of France?", "Paris."), ("Opposite of hot?", "Cold."),
    ("Translate 'gato' to English.", "Cat."), ("Spell 'dog' backwards.", "god"),
    ("Largest planet?", "Jupiter."),
]


@pytest.fixture(scope="session")
def base_model(imported_model: ImportedModel) -> Path:
    """The packaged SmolLM2, imported once per test session (tests/conftest.py)."""
    return imported_model.path


@pytest.fixture(scope="session")
def tokenizer(base_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_model))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.jsonl"
    path.write_text("".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in TINY))
    return path
