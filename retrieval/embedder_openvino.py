"""The packaged embedder's encoder run by OpenVINO on CPU: the same fp32 vectors, at less CPU time.

The model is converted once from the local sentence-transformers weights (never downloaded) and
cached as OpenVINO IR under a folder named by a hash of the weights, the config and the converter
versions, so changed weights or a new OpenVINO convert again. A conversion is written to a
temporary folder and renamed into place, so a second process never reads half a model.
Tokenising, mean pooling and normalising stay here; only the transformer runs in OpenVINO.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def is_openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def supports(st_model: Any) -> str | None:
    """Why `st_model` cannot run here (None if it can): only a transformer, mean pooling and an
    optional normalisation are reproduced outside torch."""
    names = [type(m).__name__ for m in st_model]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return f"modules {names} (OpenVINO runs Transformer, Pooling(mean), Normalize only)"
    config = st_model[1].get_config_dict()
    mode = config.get("pooling_mode", "mean" if config.get("pooling_mode_mean_tokens") else None)
    if mode != "mean":
        return f"pooling {mode!r} (OpenVINO runs mean pooling only)"
    return None


def cache_key(model_dir: Path) -> str:
    """A hash of the weights and config files in `model_dir` and the converter versions."""
    import openvino
    import torch
    import transformers

    h = hashlib.sha256(f"{openvino.__version__}|{torch.__version__}|"
                       f"{transformers.__version__}".encode())
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        path = model_dir / name
        if path.is_file():
            h.update(name.encode())
            with open(path, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
    return h.hexdigest()[:20]


def convert(st_model: Any, out: Path) -> Path:
    """Convert `st_model`'s transformer to OpenVINO IR at `out`/model.xml (fp32 weights)."""
    import openvino as ov
    import torch

    auto = st_model[0].auto_model.eval()

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.auto = auto

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.auto(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    # the example is padded, so the traced graph keeps the attention mask
    example = st_model.tokenizer(["a short one", "and a somewhat longer example text"],
                                 padding=True, return_tensors="pt")
    example = {k: example[k] if k in example else torch.zeros_like(example["input_ids"])
               for k in INPUTS}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=out.parent))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer warns of the mask's shape checks; the padded example settles them
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            model = ov.convert_model(LastHidden(), example_input=example)
        ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)
        try:
            os.rename(tmp, out)
        except OSError:  # another process converted it first
            if not (out / "model.xml").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "model.xml"


def batch_tokenizer(tokenizer: Any, max_length: int) -> Any:
    """A copy of `tokenizer`'s fast backend that truncates to `max_length` and pads a batch to its
    longest text, set once: the shared tokenizer's padding and truncation are switched per call
    by whoever uses it, which another thread's encode must not see."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    copy.enable_truncation(max_length)
    copy.enable_padding(pad_id=tokenizer.pad_token_id or 0, pad_token=tokenizer.pad_token or "[PAD]")
    return copy


class OpenVINOEncoder:
    """Texts → mean-pooled, normalised float32 vectors, the transformer compiled by OpenVINO.

    Texts are sorted by length and encoded `batch_size` at a time, so a batch is padded to about
    its own length, not to the longest text of the call. Safe to call from several threads: each
    call has its own infer request, and one batch runs at a time. Concurrent `infer` calls
    deadlocked a server in the soak benchmark (two searches just after a restart: one thread held
    the GIL waiting on a C++ static initialiser inside pyopenvino that the other held while waiting
    for the GIL); a compiled model already uses every core for one batch, so running them one at a
    time costs little."""

    def __init__(self, st_model: Any, model_dir: Path, cache_dir: Path,
                 threads: int | None = None) -> None:
        import openvino as ov

        reason = supports(st_model)
        if reason is not None:
            raise ValueError(f"the OpenVINO backend cannot run this model: {reason}")
        xml = cache_dir / cache_key(model_dir) / "model.xml"
        if not xml.is_file():
            xml = convert(st_model, xml.parent)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        model = core.read_model(xml)
        self.path = xml
        self.inputs = [i.get_any_name() for i in model.inputs]
        self.compiled = core.compile_model(model, "CPU", config)
        self.tokenizer = batch_tokenizer(st_model.tokenizer, int(st_model.max_seq_length))
        self.normalize = type(st_model[-1]).__name__ == "Normalize"
        self._infer_lock = threading.Lock()  # one batch in OpenVINO at a time (see the class)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        request = self.compiled.create_infer_request()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), 0), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            vecs = self._batch(request, [texts[i] for i in idx])
            if out.shape[1] == 0:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        return out

    def _batch(self, request: Any, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        arrays = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                  "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                  "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}
        with self._infer_lock:
            hidden = request.infer({k: arrays[k] for k in self.inputs})[0]
        mask = arrays["attention_mask"][..., None].astype(np.float32)
        vecs = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        if self.normalize:
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return np.asarray(vecs, dtype=np.float32)
