"""Deterministic stand-ins for unit tests: a hashing bag-of-words embedder."""

from __future__ import annotations

import hashlib
import re

import numpy as np

WORD = re.compile(r"[a-z0-9]+")


class FakeEmbedder:
    """Each word hashes to a fixed random direction; a text is the normalised sum of its words.

    Texts sharing words get high cosine similarity, which is all the store and API tests need.
    """

    name = "fake-bow"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls = 0

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha1(word.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in WORD.findall(text.lower()):
                out[i] += self._word(w)
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm > 0 else out[i]
        return out

    def count_tokens(self, text: str) -> int:
        return len(WORD.findall(text.lower())) + text.count(".")
