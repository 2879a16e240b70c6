"""The adapter registry without training: provenance records, the weights-hash cache, mismatches."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.adapter_registry import (
    HASH_CACHE,
    KEEP_SET,
    META_FILE,
    RESERVED_NAMES,
    AdapterRegistry,
    base_weights_hash,
    tokenizer_fingerprint,
)
from generation.adapters import BASE
from generation.errors import AdapterError, AdapterInUse, AdapterMismatch, AdapterNotFound
from tuning.config import TrainConfig


class FakeTokenizer:
    def __init__(self, template: str = "{{ messages }}", eos: str = "<|im_end|>") -> None:
        self.chat_template, self.eos_token = template, eos

    def __len__(self) -> int:
        return 100


def fake_base(root: Path, weights: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "model.safetensors").write_bytes(weights)
    return root


@pytest.fixture
def registry(tmp_path: Path) -> tuple[AdapterRegistry, Path]:
    base = fake_base(tmp_path / "base", b"weights-a")
    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    reg = AdapterRegistry(tmp_path / "adapters")
    config = TrainConfig(model=str(base), data_path="d.jsonl", output_dir=str(tmp_path / "run"))
    reg.register("support-tone", adapter, base, FakeTokenizer(), config, "abc", {"eval_loss": 1.0})
    return reg, base


def test_register_records_provenance(registry: tuple[AdapterRegistry, Path]) -> None:
    reg, base = registry
    record = reg.get("support-tone")
    assert (record.path / "adapter_config.json").is_file() and record.base_model == "base"
    assert record.base_hash == base_weights_hash(base) and record.dataset_hash == "abc"
    assert record.metrics == {"eval_loss": 1.0} and record.config["lora_r"] == 16
    assert [r.name for r in reg.list()] == ["support-tone"]


def test_other_base_is_refused(registry: tuple[AdapterRegistry, Path], tmp_path: Path) -> None:
    reg, base = registry
    other = fake_base(tmp_path / "other", b"weights-b")
    with pytest.raises(AdapterMismatch, match="trained on base 'base'"):
        reg.check_compatible("support-tone", other, FakeTokenizer())
    with pytest.raises(AdapterMismatch, match="tokenizer or chat template"):
        reg.check_compatible("support-tone", base, FakeTokenizer(template="other"))
    assert reg.check_compatible("support-tone", base, FakeTokenizer()).name == "support-tone"


def test_unknown_and_duplicate_names(registry: tuple[AdapterRegistry, Path], tmp_path: Path) -> None:
    reg, _ = registry
    with pytest.raises(AdapterNotFound, match="support-tone"):
        reg.get("nope")
    with pytest.raises(ValueError, match="adapter name"):
        reg.get("../x")


def test_weights_hash_is_cached_and_invalidated(tmp_path: Path) -> None:
    base = fake_base(tmp_path / "b", b"one")
    before = sorted(p.name for p in base.iterdir())
    cache = tmp_path / "registry" / HASH_CACHE
    cache.parent.mkdir()
    first = base_weights_hash(base, cache)
    assert cache.is_file() and base_weights_hash(base, cache) == first == base_weights_hash(base)
    (base / "model.safetensors").write_bytes(b"two!")
    assert base_weights_hash(base, cache) != first
    assert sorted(p.name for p in base.iterdir()) == before  # the model directory is never written


def test_tokenizer_fingerprint_sees_template_and_eos() -> None:
    assert tokenizer_fingerprint(FakeTokenizer()) == tokenizer_fingerprint(FakeTokenizer())
    assert tokenizer_fingerprint(FakeTokenizer(eos="</s>")) != tokenizer_fingerprint(FakeTokenizer())


def test_base_is_a_reserved_name(registry: tuple[AdapterRegistry, Path], tmp_path: Path) -> None:
    reg, base = registry
    config = TrainConfig(model=str(base), data_path="d.jsonl", output_dir=str(tmp_path / "run"))
    for name in ("base", "BASE"):
        with pytest.raises(ValueError, match="reserved"):
            reg.register(name, tmp_path / "run" / "adapter", base, FakeTokenizer(), config, "x", {})
    assert BASE in RESERVED_NAMES, "the generator's base selector must be unregistrable"


def test_active_adapter_is_persisted_and_seen_by_other_readers(
        registry: tuple[AdapterRegistry, Path]) -> None:
    reg, _ = registry
    other = AdapterRegistry(reg.root)  # another process: a server, a training worker
    assert reg.active() is None and other.active() is None
    reg.set_active("support-tone")
    assert other.active() == "support-tone"
    assert AdapterRegistry(reg.root).active() == "support-tone", "a restart keeps it"
    other.set_active(None)
    assert reg.active() is None
    with pytest.raises(AdapterNotFound):
        reg.set_active("nope")


def test_active_adapter_cannot_be_deleted(registry: tuple[AdapterRegistry, Path]) -> None:
    reg, _ = registry
    reg.set_active("support-tone")
    with pytest.raises(AdapterInUse, match="deactivate"):
        reg.delete("support-tone")
    assert isinstance(AdapterInUse("x"), AdapterMismatch), "answered 409 at the HTTP edge"
    reg.set_active(None)
    reg.delete("support-tone")
    assert reg.list() == []


@pytest.mark.parametrize("record", [None, "{not json", '{"name": "x", "surprise": 1}'])
def test_installing_a_folder_without_a_readable_record_says_so(
        registry: tuple[AdapterRegistry, Path], tmp_path: Path, record: str | None) -> None:
    reg, _ = registry
    folder = tmp_path / "packaged" / "broken"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    if record is not None:
        (folder / META_FILE).write_text(record)
    with pytest.raises(AdapterError, match="is not an adapter ragtune can read"):
        reg.install(folder)
    assert [r.name for r in reg.list()] == ["support-tone"]
    assert not any(p.name.startswith(".tmp") for p in reg.root.iterdir())


def test_an_adapter_keeps_what_it_was_trained_on_only_when_that_ones_keep_set_was_mixed_in(
        registry: tuple[AdapterRegistry, Path], tmp_path: Path) -> None:
    reg, base = registry
    served = reg.get("support-tone").path

    def tune(name: str, on: Path, mix: Path | None, share: float = 0.15) -> Path:
        out = tmp_path / name
        out.mkdir()
        config = TrainConfig(model=str(base), data_path="d.jsonl", output_dir=str(out),
                             init_adapter=str(on), mix_path=str(mix) if mix else None, mix_share=share)
        return reg.register(name, out, base, FakeTokenizer(), config, "abc", {}).path

    marker = tune("marker", served, served / KEEP_SET)
    assert reg.keeps("marker") == ["support-tone"] and reg.keeps("support-tone") == []
    tune("marker-2", marker, marker / KEEP_SET)  # a tune on a tune keeps both
    assert reg.keeps("marker-2") == ["marker", "support-tone"]
    tune("plain", served, None)  # stacked, nothing mixed in: its behaviour may be lost
    tune("off", served, served / KEEP_SET, share=0.0)
    tune("other-mix", served, tmp_path / "mine.jsonl")  # the user's own mix dataset
    assert reg.keeps("plain") == reg.keeps("off") == reg.keeps("other-mix") == []
    reg.delete("marker")
    assert reg.keeps("marker-2") == []
