"""How a linear probe's head is fitted: scikit-learn's logistic regression (the default) or Keras 3 on
its torch backend. Both minimise the same L2-regularised cross-entropy and hand back the weights in
one layout, so a probe is stored, loaded and served the same whichever fitted it.

A fitter takes embeddings `x` (n, dim), integer labels `y` (indices into `classes`, sorted as
scikit-learn sorts them) and returns `(coef, intercept)`: (1, dim) and (1,) for two classes (the
second is the positive one), else (classes, dim) and (classes,).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .errors import InvalidConfig, TuningError

PROBE_TRAINERS = ("sklearn", "keras")


class HeadFitter(Protocol):
    @property
    def name(self) -> str: ...

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int, C: float,
            seed: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class SklearnFitter:
    """scikit-learn's LogisticRegression (lbfgs), as `classifiers train` has always fitted probes."""

    max_iter: int = 1000
    name: str = "sklearn"

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int, C: float,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=C, max_iter=self.max_iter, random_state=seed).fit(x, y)
        if len(model.classes_) != n_classes:
            raise TuningError(f"the training part holds {len(model.classes_)} of {n_classes} classes")
        return np.asarray(model.coef_, dtype=np.float64), np.asarray(model.intercept_, dtype=np.float64)


def is_keras_available() -> bool:
    return importlib.util.find_spec("keras") is not None


def import_keras():  # type: ignore[no-untyped-def]
    """Keras 3 on the torch backend (set before its first import; another backend is refused)."""
    if not is_keras_available():
        raise InvalidConfig("the keras trainer needs Keras 3: pip install 'ragtune[keras]' "
                            "(or pip install keras)")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    if keras.backend.backend() != "torch":
        raise InvalidConfig(f"Keras runs on the {keras.backend.backend()!r} backend here; ragtune "
                            "trains with torch: unset KERAS_BACKEND or set it to torch")
    return keras


@dataclass(frozen=True)
class KerasFitter:
    """A Keras Dense softmax layer, trained full-batch with Adam on the mean cross-entropy plus an L2
    penalty chosen so that the objective is scikit-learn's (C times the summed loss plus ||w||^2 / 2)
    divided by C n, and `C` means the same in both: ||W||^2 / (2 C n) over K > 2 classes; for two,
    whose softmax rows settle at -w/2 and w/2, ||W||^2 / (C n). Deterministic for a given seed."""

    epochs: int = 300
    learning_rate: float = 0.05
    name: str = "keras"

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int, C: float,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
        keras = import_keras()
        keras.utils.set_random_seed(seed)
        n, dim = x.shape
        l2 = 1.0 / (C * n) if n_classes == 2 else 1.0 / (2.0 * C * n)
        layer = keras.layers.Dense(n_classes, kernel_initializer="zeros",
                                   kernel_regularizer=keras.regularizers.L2(l2))
        model = keras.Sequential([keras.Input((dim,)), layer])
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x.astype(np.float32), y.astype(np.int64), epochs=self.epochs, batch_size=n,
                  shuffle=False, verbose=0)
        w, b = (np.asarray(v, dtype=np.float64) for v in layer.get_weights())
        if n_classes == 2:  # softmax over two logits is a sigmoid of their difference
            return (w[:, 1] - w[:, 0])[None, :], np.array([b[1] - b[0]])
        return w.T.copy(), b


def head_fitter(name: str) -> HeadFitter:
    """The fitter called `name`: sklearn | keras."""
    if name == "sklearn":
        return SklearnFitter()
    if name == "keras":
        return KerasFitter()
    raise InvalidConfig(f"probe trainer {name!r} must be one of {', '.join(PROBE_TRAINERS)}")
