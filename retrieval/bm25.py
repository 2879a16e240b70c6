"""BM25 keyword search over a collection's chunks: an index updated in place as chunks come and go.

Dense embeddings miss exact wording (a sentence from page 150 of a novel, a part number); BM25 finds
it. The index keeps each chunk's term counts and the corpus statistics BM25 needs (chunk count,
document frequency per term, total length), updated by `add` and `remove`; term weights are computed
at query time for the query's terms only. So any sequence of adds and removes scores every chunk
exactly as an index built in one go from the same chunks, and a change costs what it touches, not
the collection. `save`/`load` keep it in a file beside the vector index (written atomically); the
collection reconciles it with the docstore on open, like the vector index.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .exact import fsync_replace

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


_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def _edits(term: str) -> set[str]:
    """The strings one edit (deletion, transposition, substitution, insertion) from `term`."""
    cuts = [(term[:i], term[i:]) for i in range(len(term) + 1)]
    return ({a + b[1:] for a, b in cuts if b}
            | {a + b[1] + b[0] + b[2:] for a, b in cuts if len(b) > 1}
            | {a + c + b[1:] for a, b in cuts if b for c in _LETTERS}
            | {a + c + b for a, b in cuts for c in _LETTERS})


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


# A saved index is only reused by code that tokenises as it was tokenised: bump FORMAT when
# `tokenize` changes in a way the probe below would not show.
FORMAT = 1
_PROBE = "The Pumps, of Brannock's 42 ML/d! glasses bus NO-2 Cells"
TAIL_ROWS = 2048  # rows added since the term-major matrix was last rebuilt, before it is rebuilt


def _fingerprint(k1: float, b: float) -> str:
    parts = [str(FORMAT), _TOKEN.pattern, " ".join(sorted(_STOP)), " ".join(tokenize(_PROBE)),
             repr(float(k1)), repr(float(b))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class _Growing:
    """A 1-D array appended to in place (its capacity doubles), so an append costs its own size."""

    def __init__(self, dtype: Any, values: np.ndarray | None = None) -> None:
        self._data = np.zeros(16, dtype=dtype) if values is None else np.array(values, dtype=dtype)
        self.n = 0 if values is None else len(values)

    def extend(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self._data):
            grown = np.zeros(max(need, 2 * len(self._data)), dtype=self._data.dtype)
            grown[:self.n] = self._data[:self.n]
            self._data = grown
        self._data[self.n:need] = values
        self.n = need

    @property
    def view(self) -> np.ndarray:
        return self._data[:self.n]


class BM25Index:
    """Okapi BM25. Rows are chunks in the order they were added; each row's term counts are kept
    row-major (appended to), and term-major in a CSC matrix of the older rows plus one of the
    rows added since (rebuilt from the row-major arrays, never from the texts)."""

    def __init__(self, k1: float = 0.9, b: float = 0.4) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1!r} b={b!r}")
        self.k1, self.b = k1, b
        self.vocab: dict[str, int] = {}
        self.position: dict[int, int] = {}  # live chunk id -> row
        self._clear()

    def _clear(self) -> None:
        self.vocab.clear()
        self.position.clear()
        self._ids = _Growing(np.int64)
        self._lens = _Growing(np.int64)
        self._live = _Growing(np.bool_)
        self._indptr = _Growing(np.int64, np.zeros(1))
        self._cols = _Growing(np.int32)
        self._tfs = _Growing(np.int32)
        self._df = _Growing(np.int64)
        self._total_len = 0
        self._frozen: Any = None  # CSC of rows [0, _frozen_rows)
        self._frozen_rows = 0
        self._tail: Any = None  # CSC of rows [_frozen_rows, rows), None when it must be rebuilt

    # -- changes --------------------------------------------------------------------------------

    def build(self, ids: np.ndarray, texts: Sequence[str]) -> None:
        """Index exactly these chunks (whatever was there before is dropped)."""
        self._clear()
        self.add(ids, texts)

    def add(self, ids: np.ndarray, texts: Sequence[str]) -> None:
        """Index new chunks; an id already indexed is replaced."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("the ids to add must be distinct")
        self.remove(ids)
        if not len(ids):
            return
        rows, cols = [], []
        for r, text in enumerate(texts):
            terms = [self.vocab.setdefault(t, len(self.vocab)) for t in tokenize(text)]
            rows.append(np.full(len(terms), r, dtype=np.int64))
            cols.append(np.array(terms, dtype=np.int64))
        # one (row, term) key per token; unique keys come out sorted by row, then term
        width = max(len(self.vocab), 1)
        keys, tfs = np.unique(np.concatenate(rows) * width + np.concatenate(cols),
                              return_counts=True)
        row_of, col_of = np.divmod(keys, width)
        per_row = np.bincount(row_of, minlength=len(ids))
        self._df.extend(np.zeros(len(self.vocab) - self._df.n, dtype=np.int64))
        self._df.view[:] += np.bincount(col_of, minlength=len(self.vocab))
        lens = np.bincount(row_of, weights=tfs, minlength=len(ids)).astype(np.int64)
        first = self.rows
        self.position.update(zip(ids.tolist(), range(first, first + len(ids)), strict=True))
        self._ids.extend(ids)
        self._lens.extend(lens)
        self._live.extend(np.ones(len(ids), dtype=np.bool_))
        self._indptr.extend(self._indptr.view[-1] + np.cumsum(per_row))
        self._cols.extend(col_of)
        self._tfs.extend(tfs)
        self._total_len += int(lens.sum())
        self._tail = None
        if self.rows - self._frozen_rows > TAIL_ROWS:
            self._refreeze()

    def remove(self, ids: np.ndarray) -> int:
        """Drop these chunks (ids not indexed are ignored). Returns how many were dropped."""
        rows = [self.position.pop(i) for i in np.asarray(ids, dtype=np.int64).tolist()
                if i in self.position]
        if not rows:
            return 0
        row = np.array(rows, dtype=np.int64)
        self._live.view[row] = False
        indptr = self._indptr.view
        cols = np.concatenate([self._cols.view[indptr[r]:indptr[r + 1]] for r in rows])
        self._df.view[:] -= np.bincount(cols, minlength=self._df.n)
        self._total_len -= int(self._lens.view[row].sum())
        dead = self.rows - len(self.position)
        if dead > max(TAIL_ROWS, len(self.position) // 4):
            self._refreeze()
        return len(rows)

    def _fill(self, vocab: dict[str, int], df: np.ndarray, total_len: int, ids: np.ndarray,
              lens: np.ndarray, indptr: np.ndarray, cols: np.ndarray, tfs: np.ndarray) -> None:
        """Set the rows of a cleared index (every row live) and its corpus statistics."""
        self.vocab.update(vocab)
        self._df.extend(df)
        self._total_len = total_len
        self.position.update(zip(ids.tolist(), range(len(ids)), strict=True))
        self._ids.extend(ids)
        self._lens.extend(lens)
        self._live.extend(np.ones(len(ids), dtype=np.bool_))
        self._indptr = _Growing(np.int64, indptr)
        self._cols.extend(cols)
        self._tfs.extend(tfs)

    def _refreeze(self) -> None:
        """Drop removed rows and rebuild the term-major matrix of all rows."""
        from scipy.sparse import csr_matrix

        live = self._live.view
        if not live.all():
            counts = np.diff(self._indptr.view)
            keep = np.repeat(live, counts)
            ids, lens = self._ids.view[live], self._lens.view[live]
            cols, tfs = self._cols.view[keep], self._tfs.view[keep]
            indptr = np.concatenate([[0], np.cumsum(counts[live])])
            df = self._df.view.copy()
            vocab, total = dict(self.vocab), self._total_len
            self._clear()
            self._fill(vocab, df, total, ids, lens, indptr, cols, tfs)
        shape = (self.rows, len(self.vocab))
        self._frozen = csr_matrix((self._tfs.view, self._cols.view, self._indptr.view),
                                  shape=shape).tocsc()
        self._frozen_rows, self._tail = self.rows, None

    # -- queries --------------------------------------------------------------------------------

    @property
    def rows(self) -> int:
        return self._ids.n

    @property
    def ids(self) -> np.ndarray:
        """The chunk id of every row (removed rows included: they always score 0)."""
        return self._ids.view

    def live_ids(self) -> np.ndarray:
        return np.fromiter(self.position, dtype=np.int64, count=len(self.position))

    def score_all(self, query: str) -> np.ndarray:
        """The BM25 score of every row, aligned with `self.ids`."""
        scores = np.zeros(self.rows, dtype=np.float64)
        cols = [self.vocab[t] for t in tokenize(query) if t in self.vocab]
        n = len(self.position)
        if not cols or not n:
            return scores
        df = self._df.view[cols].astype(np.float64)
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        rows, tfs, weights = self._postings(cols, idf)
        avgdl = self._total_len / n if self._total_len else 1.0
        norm = self.k1 * (1 - self.b + self.b * self._lens.view[rows] / avgdl)
        tf = tfs.astype(np.float64)
        # a row's score adds its terms in query order, however the index was built
        scores += np.bincount(rows, weights=weights * tf * (self.k1 + 1) / (tf + norm),
                              minlength=self.rows)
        if n < self.rows:
            scores[~self._live.view] = 0.0
        return scores

    def _postings(self, cols: list[int], idf: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, term count, idf) of every posting of the query's terms, term by term."""
        parts = [(m, offset) for m, offset in ((self._frozen, 0),
                                               (self._tail_matrix(), self._frozen_rows))
                 if m is not None]
        rows, tfs, weights = [], [], []
        for c, w in zip(cols, idf.tolist(), strict=True):
            for m, offset in parts:
                if c < m.shape[1]:
                    lo, hi = m.indptr[c], m.indptr[c + 1]
                    rows.append(m.indices[lo:hi].astype(np.int64) + offset)
                    tfs.append(m.data[lo:hi])
                    weights.append(np.full(hi - lo, w))
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0)
        return np.concatenate(rows), np.concatenate(tfs), np.concatenate(weights)

    def _tail_matrix(self) -> Any:
        if self._tail is None and self.rows > self._frozen_rows:
            from scipy.sparse import csr_matrix

            indptr = self._indptr.view[self._frozen_rows:]
            lo, hi = int(indptr[0]), int(indptr[-1])
            self._tail = csr_matrix((self._tfs.view[lo:hi], self._cols.view[lo:hi], indptr - lo),
                                    shape=(self.rows - self._frozen_rows, len(self.vocab))).tocsc()
        return self._tail

    def search(self, query: str, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the top k chunks with a positive score, best first."""
        return self.top(self.score_all(query), k, allowed_ids)

    def top(self, scores: np.ndarray, k: int,
            allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The top k of scores already computed by `score_all`; equal scores by chunk id."""
        ids = self.ids
        if k < 1:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        if allowed_ids is not None:
            scores = np.where(np.isin(ids, allowed_ids), scores, 0.0)
        pos = np.flatnonzero(scores > 0)
        if len(pos) > k:
            cut = np.partition(scores[pos], len(pos) - k)[len(pos) - k]
            pos = pos[scores[pos] >= cut]
        order = pos[np.lexsort((ids[pos], -scores[pos]))][:k]
        return scores[order].astype(np.float32), ids[order]

    def may_contain(self, phrase: str, ids: Sequence[int]) -> list[int]:
        """The chunks among `ids` that can contain `phrase` verbatim (as `phrase_first` matches
        it): those holding every term of its inner words. Its first and last words may match
        the end or the start of a longer word, so they are not required."""
        terms = {self.vocab.get(t, -1) for t in tokenize(" ".join(phrase_key(phrase).split()[1:-1]))}
        if not terms:
            return list(ids)
        if -1 in terms:
            return []
        rows, _, _ = self._postings(sorted(terms), np.zeros(len(terms)))
        held = np.bincount(rows, minlength=self.rows)
        return [i for i in ids if i in self.position and held[self.position[i]] == len(terms)]

    def occurs(self, term: str) -> bool:
        """Whether `term` (an indexed term, as `tokenize` makes them) is in a live chunk."""
        col = self.vocab.get(term)
        return col is not None and bool(self._df.view[col] > 0)

    def unknown(self, words: Sequence[str]) -> list[str]:
        """Those of `words` that no live chunk holds, not even misspelt: a word is known when each
        of its terms is near one in a live chunk (`_near`: a letter left out, added, changed or
        two swapped, as in "Isreal" or "Camyses")."""
        return [w for w in words if not all(self._near(t) for t in tokenize(w))]

    def _near(self, term: str) -> bool:
        """`term` or, for 5 or more characters, a term one edit away. (Two terms around one letter,
        for an accented letter that splits a word, "Valéry" indexed as "val", "ry", read
        "Enterprise" as "enter" + "rise": not done.)"""
        if self.occurs(term):
            return True
        return len(term) >= 5 and any(map(self.occurs, _edits(term)))

    def lookup(self, scores: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """The scores (from `score_all`) of these chunk ids, those indexed only."""
        return {i: float(scores[self.position[i]]) for i in ids if i in self.position}

    def __len__(self) -> int:
        return len(self.position)

    # -- files ----------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the live rows to `path` atomically (temp file, fsync, rename)."""
        if self.rows != len(self.position) or self._frozen_rows != self.rows:
            self._refreeze()
        # a name of this process's own: another process saving the same collection at the same
        # moment must not write into the file this one is about to rename
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, fingerprint=np.array(_fingerprint(self.k1, self.b)),
                     vocab=np.frombuffer("\n".join(self.vocab).encode(), dtype=np.uint8),
                     ids=self.ids, indptr=self._indptr.view, cols=self._cols.view,
                     tfs=self._tfs.view)
        fsync_replace(tmp, path)

    @classmethod
    def load(cls, path: Path, k1: float = 0.9, b: float = 0.4) -> BM25Index:
        """The index `save` wrote; ValueError when it was written with other settings or is
        inconsistent (the caller rebuilds it from the docstore)."""
        index = cls(k1, b)
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != _fingerprint(k1, b):
                raise ValueError(f"{path} was written by another tokenizer or BM25 settings")
            words = data["vocab"].tobytes().decode()
            ids, indptr = data["ids"].astype(np.int64), data["indptr"].astype(np.int64)
            cols, tfs = data["cols"].astype(np.int32), data["tfs"].astype(np.int32)
        terms = words.split("\n") if words else []
        per_row = np.diff(indptr)
        if (len(indptr) != len(ids) + 1 or indptr[0] != 0 or (per_row < 0).any()
                or indptr[-1] != len(cols) or len(cols) != len(tfs) or len(set(terms)) != len(terms)
                or len(np.unique(ids)) != len(ids) or (len(cols) and (
                    cols.min() < 0 or cols.max() >= len(terms) or tfs.min() < 1))):
            raise ValueError(f"{path} is not a consistent BM25 index")
        row_of = np.repeat(np.arange(len(ids)), per_row)
        lens = np.bincount(row_of, weights=tfs, minlength=len(ids)).astype(np.int64)
        index._fill(dict(zip(terms, range(len(terms)), strict=True)),
                    np.bincount(cols, minlength=len(terms)).astype(np.int64), int(lens.sum()),
                    ids, lens, indptr, cols, tfs)
        index._refreeze()
        return index
