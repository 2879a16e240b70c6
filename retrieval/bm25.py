"""BM25 keyword search over a collection's chunks (sparse matrices, built in memory).

Dense embeddings miss exact wording (a sentence from page 150 of a novel, a part number); BM25 finds
it. The index is rebuilt from the docstore's texts when the collection changed, so it needs no files
of its own and can never disagree with the docstore for long.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be but by for from has have he her his i in is it its of on or that the "
    "their them they this to was were which who will with you your we our not no".split())


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words, stop words dropped, plural -s stripped."""
    out = []
    for word in _TOKEN.findall(text.lower()):
        if word in _STOP:
            continue
        out.append(word[:-1] if len(word) > 3 and word.endswith("s") and word[-2] != "s" else word)
    return out


def phrase_key(text: str) -> str:
    """Text reduced to lower-case alphanumeric words joined by single spaces, for verbatim
    matching that ignores punctuation, case and line breaks."""
    return " ".join(_TOKEN.findall(text.lower()))


PHRASE_MIN_WORDS = 5


def is_phrase(query: str, min_words: int = PHRASE_MIN_WORDS) -> bool:
    """Long enough that finding it verbatim in a chunk is strong evidence."""
    return len(phrase_key(query).split()) >= min_words


def phrase_first(query: str, ranked: list[int], texts: dict[int, str],
                 min_words: int = PHRASE_MIN_WORDS) -> list[int]:
    """Move chunks that contain the query verbatim to the front, keeping the order otherwise."""
    key = phrase_key(query)
    if not is_phrase(query, min_words):
        return ranked
    exact = [i for i in ranked if key in phrase_key(texts.get(i, ""))]
    return exact + [i for i in ranked if i not in set(exact)]


class BM25Index:
    """Okapi BM25 with precomputed term weights in a CSC matrix (rows = chunks, columns = terms)."""

    def __init__(self, k1: float = 0.9, b: float = 0.4) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1!r} b={b!r}")
        self.k1, self.b = k1, b
        self.ids = np.zeros(0, dtype=np.int64)
        self.position: dict[int, int] = {}
        self.vocab: dict[str, int] = {}
        self.weights = None

    def build(self, ids: np.ndarray, texts: Sequence[str]) -> None:
        from scipy.sparse import csr_matrix

        rows, cols, tfs, lengths = [], [], [], []
        for r, text in enumerate(texts):
            terms = tokenize(text)
            lengths.append(len(terms))
            counts: dict[int, int] = {}
            for t in terms:
                col = self.vocab.setdefault(t, len(self.vocab))
                counts[col] = counts.get(col, 0) + 1
            rows += [r] * len(counts)
            cols += list(counts)
            tfs += list(counts.values())
        n = len(texts)
        tf = np.array(tfs, dtype=np.float32)
        dl = np.array(lengths, dtype=np.float32)
        avgdl = float(dl.mean()) if n else 1.0
        df = np.bincount(np.array(cols, dtype=np.int64), minlength=len(self.vocab))
        idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        row_idx = np.array(rows, dtype=np.int64)
        norm = self.k1 * (1 - self.b + self.b * dl[row_idx] / max(avgdl, 1e-9))
        data = idf[np.array(cols, dtype=np.int64)] * tf * (self.k1 + 1) / (tf + norm)
        self.weights = csr_matrix((data, (row_idx, cols)), shape=(n, len(self.vocab))).tocsc()
        self.ids = np.asarray(ids, dtype=np.int64)
        self.position = {int(i): n for n, i in enumerate(self.ids)}

    def score_all(self, query: str) -> np.ndarray:
        """The BM25 score of every chunk, aligned with `self.ids`."""
        cols = [self.vocab[t] for t in tokenize(query) if t in self.vocab]
        if self.weights is None or not cols:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self.weights[:, cols].sum(axis=1)).ravel()

    def search(self, query: str, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the top k chunks with a positive score, best first."""
        return self.top(self.score_all(query), k, allowed_ids)

    def top(self, scores: np.ndarray, k: int,
            allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The top k of scores already computed by `score_all`."""
        if not len(self.ids):
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        if allowed_ids is not None:
            scores = np.where(np.isin(self.ids, allowed_ids), scores, 0.0)
        top = min(k, int((scores > 0).sum()))
        if top == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        order = np.argpartition(-scores, top - 1)[:top]
        order = order[np.argsort(-scores[order], kind="stable")]
        return scores[order].astype(np.float32), self.ids[order]

    def __len__(self) -> int:
        return len(self.ids)
