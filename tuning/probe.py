"""Linear probes: a logistic-regression head on frozen, normalised sentence embeddings.

The cheapest way to teach ragtune a classification task (sentiment, topic, routing): `text,label`
data is embedded once by the collection embedder, scikit-learn fits the head, and the head is kept
as plain arrays (`coef.npy`, `intercept.npy`, loaded without pickle) beside a JSON record of its
labels, embedder, data hash and metrics. A probe refuses to run on another embedder than it was
trained on, since its weights mean nothing in another embedding space.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.embedder import Embedder

from .datasets import MAX_PROBLEMS, dataset_hash, read_records
from .errors import ClassifierMismatch, ClassifierNotFound, DatasetError, InvalidConfig, TuningError

META_FILE = "classifier.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def load_labelled(path: str | Path, text_column: str = "text",
                  label_column: str = "label") -> tuple[list[str], list[str]]:
    """(texts, labels) of a .csv, .jsonl or .json file; one DatasetError lists every bad record.

    Labels may be strings or integers (kept as their string form); at least two classes are needed.
    """
    records = read_records(path)
    if Path(path).suffix.lower() == ".csv":
        header: list[str] = list(next(records, (1, []))[1])
        for column in (text_column, label_column):
            if column not in header:
                raise DatasetError(f"missing column (the header has {', '.join(header) or 'nothing'})",
                                   1, column)
    texts: list[str] = []
    labels: list[str] = []
    problems: list[DatasetError] = []
    for line, record in records:
        try:
            if isinstance(record, DatasetError):
                raise record
            text, label = _labelled(record, line, text_column, label_column)
        except DatasetError as exc:
            exc.line = line if exc.line is None else exc.line
            problems.append(exc)
            continue
        texts.append(text)
        labels.append(label)
    if problems:
        shown = "\n".join(f"  {p}" for p in problems[:MAX_PROBLEMS])
        raise DatasetError(f"{path}: {len(problems)} invalid record(s):\n{shown}",
                           problems=problems[:MAX_PROBLEMS])
    classes = Counter(labels)
    if len(classes) < 2:
        found = f"only {next(iter(classes))!r}" if classes else "no records"
        raise DatasetError(f"{path}: a classifier needs at least two classes in {label_column!r}; "
                           f"found {found}", field=label_column)
    return texts, labels


def _labelled(record: Any, line: int, text_column: str, label_column: str) -> tuple[str, str]:
    if not isinstance(record, dict):
        raise DatasetError(f"must be an object with named fields, not {type(record).__name__}", line)
    text = record.get(text_column)
    if not isinstance(text, str) or not text.strip():
        raise DatasetError("is missing" if text_column not in record else "must be a non-empty string",
                           line, text_column)
    label = record.get(label_column)
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, str | int) or not str(label).strip():
        state = "is missing" if label_column not in record or label is None \
            else "must be a non-empty string or an integer"
        raise DatasetError(state, line, label_column)
    return text, str(label).strip()


@dataclass(frozen=True)
class Probe:
    """A trained head: `coef` is (1, dim) for two labels (the second is positive), else (labels, dim)."""

    labels: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray
    embedder: str
    dim: int

    def __post_init__(self) -> None:
        rows = 1 if len(self.labels) == 2 else len(self.labels)
        if len(self.labels) < 2 or self.coef.shape != (rows, self.dim) or self.intercept.shape != (rows,):
            raise TuningError(f"a probe over {len(self.labels)} labels needs coef ({rows}, {self.dim}) "
                              f"and intercept ({rows},), not {self.coef.shape} and "
                              f"{self.intercept.shape}")

    @classmethod
    def from_sklearn(cls, model: Any, embedder: str) -> Probe:
        return cls(labels=tuple(str(c) for c in model.classes_),
                   coef=np.asarray(model.coef_, dtype=np.float64),
                   intercept=np.asarray(model.intercept_, dtype=np.float64),
                   embedder=embedder, dim=int(model.coef_.shape[1]))

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(texts, labels) probabilities, as scikit-learn's predict_proba gives them."""
        z = np.asarray(vectors, dtype=np.float64) @ self.coef.T + self.intercept
        if len(self.labels) == 2:
            positive = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1.0 - positive, positive], axis=1)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def check_embedder(self, embedder: Embedder) -> None:
        if embedder.name != self.embedder or embedder.dim != self.dim:
            raise ClassifierMismatch(
                f"this classifier was trained on embeddings of {self.embedder!r} (dim {self.dim}), "
                f"but the embedder is {embedder.name!r} (dim {embedder.dim}); set RAGTUNE_EMBEDDER "
                "back or retrain the classifier")

    def predict(self, texts: list[str], embedder: Embedder) -> list[dict[str, Any]]:
        """Per text: the most probable label and every label's probability."""
        self.check_embedder(embedder)
        probs = self.probabilities(embedder.embed_batch(list(texts)))
        return [{"label": self.labels[int(row.argmax())],
                 "scores": {label: round(float(p), 6) for label, p in zip(self.labels, row, strict=True)}}
                for row in probs]


def _split(labels: list[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices; stratified when every class can give the validation set a member."""
    from sklearn.model_selection import train_test_split

    if not 0.0 <= val_fraction < 1.0:
        raise InvalidConfig(f"val_fraction {val_fraction!r} must be in [0, 1)")
    index = np.arange(len(labels))
    n_val = round(len(labels) * val_fraction)
    if n_val == 0:
        return index, index[:0]
    classes = Counter(labels)
    stratify = labels if min(classes.values()) >= 2 and len(classes) <= min(n_val, len(labels) - n_val) \
        else None
    train, val = train_test_split(index, test_size=n_val, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


def train_probe(texts: list[str], labels: list[str], embedder: Embedder, val_fraction: float = 0.2,
                seed: int = 42, C: float = 1.0, max_iter: int = 1000,
                trainer: str = "sklearn") -> tuple[Probe, dict[str, Any]]:
    """Fit the head on `1 - val_fraction` of the data with `trainer` (tuning/probe_fit.py: sklearn
    or keras); metrics on both parts, with the baseline of always answering the training set's most
    frequent label."""
    from sklearn.metrics import accuracy_score, f1_score

    from .probe_fit import SklearnFitter, head_fitter

    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts for {len(labels)} labels")
    if C <= 0:
        raise InvalidConfig(f"C {C!r} must be > 0")
    fitter = SklearnFitter(max_iter=max_iter) if trainer == "sklearn" else head_fitter(trainer)
    train, val = _split(labels, val_fraction, seed)
    y = np.array(labels, dtype=object)
    classes = sorted(set(y[train]))
    if len(classes) < 2:
        raise DatasetError("the training part holds one class only: add examples of the others or "
                           "lower the validation fraction")
    x = embedder.embed_batch(list(texts))
    index = {label: i for i, label in enumerate(classes)}
    started = time.perf_counter()
    coef, intercept = fitter.fit(x[train], np.array([index[label] for label in y[train]]),
                                 len(classes), C, seed)
    fit_seconds = time.perf_counter() - started
    probe = Probe(labels=tuple(str(c) for c in classes), coef=coef, intercept=intercept,
                  embedder=embedder.name, dim=int(coef.shape[1]))
    majority = Counter(y[train]).most_common(1)[0][0]
    metrics: dict[str, Any] = {"n_train": len(train), "n_val": len(val), "C": C, "trainer": fitter.name,
                               "fit_seconds": round(fit_seconds, 3),
                               "n_per_class": dict(sorted(Counter(labels).items())),
                               "majority_label": majority}
    for part, idx in (("train", train), ("val", val)):
        if len(idx):
            predicted = np.array(probe.labels, dtype=object)[probe.probabilities(x[idx]).argmax(axis=1)]
            metrics[f"{part}_accuracy"] = round(float(accuracy_score(y[idx], predicted)), 4)
            metrics[f"{part}_macro_f1"] = round(float(f1_score(y[idx], predicted, average="macro")), 4)
            metrics[f"{part}_majority_baseline"] = round(float(np.mean(y[idx] == majority)), 4)
    return probe, metrics


def check_name(name: str) -> None:
    if not NAME_RE.match(name) or ".." in name:
        raise InvalidConfig(f"classifier name {name!r} must be 1-64 letters, digits, '_', '-' or '.', "
                            "starting with a letter or digit")


@dataclass(frozen=True)
class ClassifierRecord:
    name: str
    labels: list[str]
    embedder: str
    dim: int
    dataset_hash: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""


class ClassifierRegistry:
    """Classifiers under `root`, one directory each, written to a temporary one and renamed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, probe: Probe, metrics: dict[str, Any], dataset_hash: str = "",
             overwrite: bool = False) -> ClassifierRecord:
        check_name(name)
        target = self.root / name
        if target.exists() and not overwrite:
            raise TuningError(f"classifier {name!r} already exists; delete it or pass overwrite")
        record = ClassifierRecord(name=name, labels=list(probe.labels), embedder=probe.embedder,
                                  dim=probe.dim, dataset_hash=dataset_hash, metrics=dict(metrics),
                                  created_at=datetime.now(UTC).isoformat())
        tmp = self.root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        np.save(tmp / "coef.npy", probe.coef, allow_pickle=False)
        np.save(tmp / "intercept.npy", probe.intercept, allow_pickle=False)
        (tmp / META_FILE).write_text(json.dumps(asdict(record), indent=2) + "\n")
        old = self.root / f".old-{name}-{uuid.uuid4().hex[:8]}"
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return record

    def list(self) -> list[ClassifierRecord]:
        return [self._read(d) for d in sorted(self.root.iterdir())
                if not d.name.startswith(".") and (d / META_FILE).is_file()]

    def get(self, name: str) -> ClassifierRecord:
        check_name(name)
        if not (self.root / name / META_FILE).is_file():
            known = ", ".join(r.name for r in self.list()) or "none"
            raise ClassifierNotFound(f"classifier {name!r} not found (classifiers: {known})")
        return self._read(self.root / name)

    def load(self, name: str, embedder: Embedder | None = None) -> Probe:
        """The probe `name`; with `embedder`, refused unless it is the one trained on."""
        record = self.get(name)
        folder = self.root / name
        probe = Probe(labels=tuple(record.labels), embedder=record.embedder, dim=record.dim,
                      coef=np.load(folder / "coef.npy", allow_pickle=False),
                      intercept=np.load(folder / "intercept.npy", allow_pickle=False))
        if embedder is not None:
            probe.check_embedder(embedder)
        return probe

    def delete(self, name: str) -> None:
        self.get(name)
        trash = self.root / f".deleted-{name}-{uuid.uuid4().hex[:8]}"
        (self.root / name).rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    @staticmethod
    def _read(folder: Path) -> ClassifierRecord:
        return ClassifierRecord(**json.loads((folder / META_FILE).read_text()))


def train_and_register(name: str, data_path: str | Path, embedder: Embedder,
                       registry: ClassifierRegistry, text_column: str = "text",
                       label_column: str = "label", seed: int = 42, val_fraction: float = 0.2,
                       C: float = 1.0, overwrite: bool = False,
                       trainer: str = "sklearn") -> ClassifierRecord:
    """Read `data_path`, train a probe and save it as `name` (checked before any training)."""
    check_name(name)
    if not overwrite and (registry.root / name).exists():
        raise TuningError(f"classifier {name!r} already exists; delete it or pass overwrite")
    texts, labels = load_labelled(data_path, text_column, label_column)
    probe, metrics = train_probe(texts, labels, embedder, val_fraction, seed, C, trainer=trainer)
    return registry.save(name, probe, metrics, dataset_hash(data_path), overwrite=overwrite)
