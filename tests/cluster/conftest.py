"""One local Ray cluster on loopback for the whole test session (it takes seconds to start)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPUS = 4  # logical: two embedder actors, serve replicas and DDP workers share the 2 real cores


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """Ray started on 127.0.0.1 by this process, with `CPUS` logical CPUs; shut down at the end."""
    ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
    from cluster.connect import LOCAL, connect

    # workers import the tests' own modules (fake embedders) from the checkout
    connect(LOCAL, num_cpus=CPUS, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield
    ray.shutdown()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.cluster)


# the tuning tests' session fixtures: the packaged SmolLM2 imported once, a tiny alpaca dataset
from tests.tuning.conftest import base_model, tiny_data  # noqa: E402, F401


@pytest.fixture(scope="session")
def tiny_base(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """SmolLM2's architecture and tokenizer at one layer of width 64 (random weights): DDP over
    two workers then costs seconds, not minutes, on two shared cores."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(str(base_model))
    config.update({"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128,
                   "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32})
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-base")
    AutoModelForCausalLM.from_config(config).save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base_model)).save_pretrained(str(out))
    return out
