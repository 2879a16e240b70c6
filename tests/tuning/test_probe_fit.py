"""Probe head fitters (tuning/probe_fit.py): one contract for scikit-learn and Keras, their agreement on
the same data, and the trainer choice carried into the probe's metrics and refused where it cannot
apply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fakes import FakeEmbedder
from tuning.config import TrainConfig
from tuning.errors import InvalidConfig
from tuning.probe import ClassifierRegistry, train_probe
from tuning.probe_fit import HeadFitter, KerasFitter, SklearnFitter, head_fitter, is_keras_available

needs_keras = pytest.mark.skipif(not is_keras_available(),
                                 reason="keras is not installed: pip install keras")


def _blobs(n_classes: int, n: int = 60, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * 3
    y = np.arange(n) % n_classes
    x = centres[y] + rng.standard_normal((n, dim)) * 0.5
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


class HeadFitterContract:
    fitter: HeadFitter

    def _predict(self, coef: np.ndarray, intercept: np.ndarray, x: np.ndarray) -> np.ndarray:
        z = x @ coef.T + intercept
        return (z[:, 0] > 0).astype(int) if coef.shape[0] == 1 else z.argmax(axis=1)

    def test_two_classes_give_one_row_with_the_second_positive(self) -> None:
        x, y = _blobs(2)
        coef, intercept = self.fitter.fit(x, y, 2, C=10.0, seed=0)
        assert coef.shape == (1, 16) and intercept.shape == (1,)
        assert (self._predict(coef, intercept, x) == y).mean() == 1.0

    def test_several_classes_give_a_row_each(self) -> None:
        x, y = _blobs(3)
        coef, intercept = self.fitter.fit(x, y, 3, C=10.0, seed=0)
        assert coef.shape == (3, 16) and intercept.shape == (3,)
        assert (self._predict(coef, intercept, x) == y).mean() == 1.0

    def test_a_seed_gives_the_same_head(self) -> None:
        x, y = _blobs(2)
        first, second = (self.fitter.fit(x, y, 2, C=1.0, seed=3) for _ in range(2))
        np.testing.assert_allclose(first[0], second[0], atol=1e-6)


class TestSklearnFitter(HeadFitterContract):
    fitter = SklearnFitter()


@needs_keras
class TestKerasFitter(HeadFitterContract):
    fitter = KerasFitter(epochs=100, learning_rate=0.1)


@needs_keras
def test_keras_finds_the_head_sklearn_finds_on_the_same_objective() -> None:
    x, y = _blobs(2, n=80, seed=1)
    y[:8] = 1 - y[:8]  # some noise, so the regularised optimum is not at infinity
    (ks, kb), (ss, sb) = (f.fit(x, y, 2, C=1.0, seed=0) for f in (KerasFitter(epochs=400), SklearnFitter()))
    assert np.corrcoef(ks[0], ss[0])[0, 1] > 0.99
    assert np.linalg.norm(ks - ss) / np.linalg.norm(ss) < 0.1


@needs_keras
def test_a_keras_probe_is_stored_and_served_like_any_other(tmp_path: Path) -> None:
    texts = ["great lovely stay", "loved it great", "wonderful great food", "awful dirty stay",
             "hated it awful", "terrible awful food"]
    labels = ["good"] * 3 + ["bad"] * 3
    embedder = FakeEmbedder()
    probe, metrics = train_probe(texts, labels, embedder, val_fraction=0.0, C=10.0, trainer="keras")
    assert metrics["trainer"] == "keras" and metrics["train_accuracy"] == 1.0 and metrics["fit_seconds"] > 0
    registry = ClassifierRegistry(tmp_path)
    registry.save("mood", probe, metrics)
    assert sorted(p.name for p in (tmp_path / "mood").iterdir()) == ["classifier.json", "coef.npy",
                                                                    "intercept.npy"]
    loaded = registry.load("mood", embedder)
    assert [p["label"] for p in loaded.predict(["great lovely", "awful dirty"], embedder)] == ["good", "bad"]
    assert registry.get("mood").metrics["trainer"] == "keras"


def test_the_default_trainer_is_sklearn_and_others_are_refused() -> None:
    _, metrics = train_probe(["a b", "c d", "a", "c"], ["x", "y", "x", "y"], FakeEmbedder(), val_fraction=0.0)
    assert metrics["trainer"] == "sklearn"
    with pytest.raises(InvalidConfig, match="must be one of sklearn, keras"):
        head_fitter("tensorflow")
    with pytest.raises(InvalidConfig, match="trainer keras trains a LoRA .* drop --method"):
        TrainConfig(model="m", data_path="d.jsonl", output_dir="o", trainer="keras", method="qlora")
