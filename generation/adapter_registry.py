"""The adapter registry: trained adapters kept by name, with what they may be put on.

Each adapter lives in `root/<name>/` beside a `ragtune_adapter.json` that records its base model (name
and a sha256 of its safetensors weights), a fingerprint of the tokenizer (chat template, vocabulary
size, EOS token), the dataset's hash, the training config and metrics. `check_compatible` refuses a
base or tokenizer other than the one trained on; `load_onto` puts adapters on a model (several can be
loaded, one active); `merge` folds a LoRA adapter into an fp32 copy of the base. `root/active.json`
names the adapter being served; any process (the server, the CLI, a training worker promoting an
adapter) may write it, and readers re-read it only when the file changed.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .adapters import BASE
from .errors import AdapterError, AdapterInUse, AdapterMismatch, AdapterNotFound, InvalidRequest

META_FILE = "ragtune_adapter.json"
ACTIVE_FILE = "active.json"
KEEP_SET = "keep.jsonl"  # in an adapter's directory: examples of what it does, mixed into tunes on it
RESERVED_NAMES = (BASE,)  # selects the base model without an adapter, per request
HASH_CACHE = ".base-weights-sha256.json"  # in the registry: {model dir: {files, sha256}}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


class TrainedWith(Protocol):
    """How an adapter was trained, as its record keeps it (tuning's TrainConfig is one)."""

    method: str

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class AdapterRecord:
    """One registered adapter and what it was trained on."""

    name: str
    path: Path
    method: str
    base_model: str
    base_hash: str
    tokenizer_fingerprint: str
    dataset_hash: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "path"}


def check_name(name: str) -> None:
    if not NAME_RE.match(name) or ".." in name:
        raise InvalidRequest(f"adapter name {name!r} must be 1-64 letters, digits, '_', '-' or '.', "
                             "starting with a letter or digit")
    if name.lower() in RESERVED_NAMES:
        raise InvalidRequest(f"adapter name {name!r} is reserved: it selects the base model without an "
                             "adapter; pick another name")


def _weight_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    if not files:
        raise AdapterError(f"{model_dir} holds no model weights (*.safetensors); is it a model directory?")
    return files


def base_weights_hash(model_dir: str | Path, cache: Path | None = None) -> str:
    """sha256 over the base model's weight files, remembered in the JSON file `cache` (keyed by
    the directory, and its files' sizes and mtimes). The model directory is never written into:
    it may be a user's, outside the data dir."""
    model_dir = Path(model_dir)
    files = _weight_files(model_dir)
    stamp = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    key = str(model_dir.resolve())
    known: dict[str, Any] = {}
    if cache is not None:
        try:
            known = json.loads(cache.read_text())
            if known.get(key, {}).get("files") == stamp:
                return str(known[key]["sha256"])
        except (OSError, ValueError, AttributeError):
            known = {}
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    value = digest.hexdigest()
    if cache is not None:
        known[key] = {"files": stamp, "sha256": value}
        tmp = cache.with_name(f"{cache.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_text(json.dumps(known) + "\n")
            os.replace(tmp, cache)
        except OSError:
            tmp.unlink(missing_ok=True)  # hash again next time
    return value


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of what makes token ids and prompts mean the same: template, vocab size, EOS."""
    template = str(getattr(tokenizer, "chat_template", "") or "")
    parts = [template, str(len(tokenizer)), str(tokenizer.eos_token)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class AdapterRegistry:
    """Adapters under `root`, one directory per name."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._active: str | None = None
        self._active_stamp: tuple[int, int, int] | None = None

    def register(self, name: str, adapter_dir: Path, base_model_path: str | Path, tokenizer: Any,
                 config: TrainedWith, dataset_hash: str, metrics: dict[str, Any]) -> AdapterRecord:
        """Copy `adapter_dir` into the registry as `name` and record its provenance."""
        check_name(name)
        target = self.root / name
        if target.exists():
            raise AdapterError(f"adapter {name!r} already exists in {self.root}; pick another name")
        record = AdapterRecord(
            name=name, path=target, method=config.method, base_model=Path(base_model_path).name,
            base_hash=base_weights_hash(base_model_path, self.root / HASH_CACHE),
            tokenizer_fingerprint=tokenizer_fingerprint(tokenizer),
            dataset_hash=dataset_hash, config=config.to_dict(), metrics=dict(metrics),
            created_at=datetime.now(UTC).isoformat())
        tmp = self.root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        shutil.copytree(adapter_dir, tmp)
        (tmp / META_FILE).write_text(json.dumps(record.to_json(), indent=2, default=str) + "\n")
        tmp.rename(target)
        return record

    def install(self, packaged: Path) -> AdapterRecord | None:
        """Copy a packaged adapter (a directory holding its weights and its record) into the
        registry under the record's name; None when that name is already registered."""
        record = self._read(packaged)
        target = self.root / record.name
        if target.exists():
            return None
        tmp = self.root / f".tmp-{record.name}-{uuid.uuid4().hex[:8]}"
        shutil.copytree(packaged, tmp)
        tmp.rename(target)
        return self.get(record.name)

    def never_chosen(self) -> bool:
        """True until an adapter is activated or the base is chosen (deactivate)."""
        return not (self.root / ACTIVE_FILE).exists()

    def list(self) -> list[AdapterRecord]:
        return [self._read(d) for d in sorted(self.root.iterdir()) if (d / META_FILE).is_file()]

    def get(self, name: str) -> AdapterRecord:
        check_name(name)
        path = self.root / name
        if not (path / META_FILE).is_file():
            known = ", ".join(r.name for r in self.list()) or "none"
            raise AdapterNotFound(f"adapter {name!r} is not in {self.root} (adapters: {known})")
        return self._read(path)

    def keeps(self, name: str) -> builtins.list[str]:
        """The adapters whose behaviour `name` was trained to keep, nearest first: the adapter it
        was trained on, when that run mixed in the adapter's keep set (KEEP_SET), then what that
        one keeps, and so on. Answering calibrated on one of them holds for `name` too."""
        kept: builtins.list[str] = []
        record = self.get(name)
        while True:
            init, mix = record.config.get("init_adapter"), record.config.get("mix_path")
            if not init or not mix or not record.config.get("mix_share"):
                return kept
            parent = Path(init).name
            if Path(mix).name != KEEP_SET or Path(mix).parent.name != parent \
                    or parent in kept or parent == name:
                return kept
            try:
                record = self.get(parent)
            except AdapterError:  # deleted since: nothing further to follow
                return kept
            kept.append(parent)

    def _read(self, path: Path) -> AdapterRecord:
        try:
            data = json.loads((path / META_FILE).read_text())
            return AdapterRecord(path=path, **data)
        except (OSError, ValueError, TypeError) as exc:  # missing, unreadable, not its record
            raise AdapterError(f"{path} is not an adapter ragtune can read: its record "
                               f"{META_FILE} is missing or broken ({exc})") from exc

    def delete(self, name: str) -> None:
        """Remove adapter `name`; refused (AdapterInUse) while it is the active one."""
        record = self.get(name)
        if self.active() == name:
            raise AdapterInUse(f"adapter {name!r} is active (being served); deactivate it or "
                               "activate another before deleting it")
        shutil.rmtree(record.path)

    def active(self) -> str | None:
        """The adapter being served (None: the base alone), as last written by any process.

        The file is read again only when its inode, size or mtime changed, so asking per request
        costs one stat.
        """
        path = self.root / ACTIVE_FILE
        try:
            st = path.stat()
        except FileNotFoundError:
            self._active, self._active_stamp = None, None
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._active_stamp:
            try:
                name = json.loads(path.read_text()).get("name")
            except (OSError, ValueError, AttributeError) as exc:
                raise AdapterError(f"{path} is unreadable ({exc}); activate an adapter again "
                                  "or delete the file to serve the base") from exc
            self._active, self._active_stamp = (str(name) if name else None), stamp
        return self._active

    def set_active(self, name: str | None) -> None:
        """Make `name` the served adapter (None: the base). Written atomically; check compatibility
        with the serving base first (`check_compatible`)."""
        if name is not None:
            self.get(name)
        body = {"name": name, "since": datetime.now(UTC).isoformat()}
        tmp = self.root / f".{ACTIVE_FILE}.{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(body) + "\n")
        os.replace(tmp, self.root / ACTIVE_FILE)  # a new inode: readers see the change by stat

    def check_compatible(self, name: str, base_model_path: str | Path, tokenizer: Any) -> AdapterRecord:
        """The record of `name`, or AdapterMismatch if it was trained on another base or tokenizer."""
        record = self.get(name)
        base_hash = base_weights_hash(base_model_path, self.root / HASH_CACHE)
        if base_hash != record.base_hash:
            raise AdapterMismatch(
                f"adapter {name!r} was trained on base {record.base_model!r} (weights "
                f"{record.base_hash[:12]}), not on {Path(base_model_path).name!r} (weights "
                f"{base_hash[:12]}); load it on the base it was trained on, or retrain it on this one")
        if tokenizer_fingerprint(tokenizer) != record.tokenizer_fingerprint:
            raise AdapterMismatch(
                f"adapter {name!r} was trained with another tokenizer or chat template than this "
                f"model's; prompts would not match training: retrain it with this tokenizer")
        return record

    def load_onto(self, model: Any, name: str) -> Any:
        """`model` as a peft model with adapter `name` loaded and active (adapter_name=name).

        Call again with other names to load more; `model.set_adapter(name)` switches between them
        and `with model.disable_adapter():` runs the base.
        """
        from peft import PeftModel

        record = self.get(name)
        if record.method == "full":
            raise AdapterError(f"{name!r} is a fully fine-tuned model, not an adapter: load it as a model "
                              f"from {record.path}")
        if isinstance(model, PeftModel):
            if name not in model.peft_config:
                model.load_adapter(str(record.path), adapter_name=name)
            model.set_adapter(name)
            return model
        return PeftModel.from_pretrained(model, str(record.path), adapter_name=name)

    def merge(self, name: str, base_model_path: str | Path, out_dir: Path) -> str | None:
        """Merge LoRA adapter `name` into an fp32 copy of the base and save a full model directory.

        Returns a warning when the adapter was trained on a quantised base (the merge is into the
        unquantised weights, so outputs differ slightly from base+adapter as trained), else None.
        """
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        record = self.get(name)
        if record.method not in ("lora", "qlora"):
            raise AdapterError(f"only LoRA adapters can be merged; {name!r} is {record.method}")
        if Path(out_dir).exists():
            raise AdapterError(f"{out_dir} already exists; pick a new directory for the merged model")
        base = AutoModelForCausalLM.from_pretrained(str(base_model_path), dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, str(record.path)).merge_and_unload()
        merged.save_pretrained(str(out_dir), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(base_model_path)).save_pretrained(str(out_dir))
        quantization = record.config.get("quantization", "none")
        if quantization != "none":
            return (f"adapter {name!r} was trained on a {quantization}-quantised base; it was merged into "
                    "the fp32 weights, so outputs differ slightly from the quantised base + adapter")
        return None
