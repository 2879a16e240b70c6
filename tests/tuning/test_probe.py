"""Linear probes: labelled-data checks with line numbers, the head matching scikit-learn, the
registry (round trip, atomic overwrite, embedder mismatch) and real sentiment on MiniLM."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import FakeEmbedder
from tuning.errors import ClassifierMismatch, ClassifierNotFound, DatasetError, TuningError
from tuning.probe import (
    ClassifierRegistry,
    Probe,
    load_labelled,
    train_and_register,
    train_probe,
)

SUBJECTS = ["The film", "This restaurant", "Our hotel room", "The new phone", "That concert"]
POSITIVE = ["was wonderful and I loved every minute", "was a delight from start to finish",
            "exceeded all my expectations, brilliant", "made me really happy, highly recommended"]
NEGATIVE = ["was awful and I hated every minute", "was a disaster from start to finish",
            "was a huge disappointment, terrible", "made me angry, a complete waste of money"]


def sentiment() -> tuple[list[str], list[str]]:
    rows = [(f"{s} {p}.", "positive") for s, p in itertools.product(SUBJECTS, POSITIVE)]
    rows += [(f"{s} {n}.", "negative") for s, n in itertools.product(SUBJECTS, NEGATIVE)]
    return [t for t, _ in rows], [lab for _, lab in rows]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_labelled_jsonl_json_and_csv(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [{"text": "good", "label": "pos"}, {"text": "bad", "label": 0},
                                     {"text": "so-so", "label": 1.0}]
    assert load_labelled(write_jsonl(tmp_path / "d.jsonl", rows)) == \
        (["good", "bad", "so-so"], ["pos", "0", "1"])
    (tmp_path / "d.json").write_text(json.dumps([{"review": "fine", "stars": 4},
                                                 {"review": "poor", "stars": 2}]))
    assert load_labelled(tmp_path / "d.json", "review", "stars") == (["fine", "poor"], ["4", "2"])
    csv = tmp_path / "d.csv"
    csv.write_text("review,stars\nlovely,5\nawful,1\nok,3\n")
    assert load_labelled(csv, "review", "stars") == (["lovely", "awful", "ok"], ["5", "1", "3"])


def test_dataset_errors_name_line_and_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"text": "fine", "label": "pos"}, {"text": "  ", "label": "neg"}, {"text": "ok"},
        {"text": "meh", "label": ["a"]}, {"text": "yes", "label": "pos"}])
    with pytest.raises(DatasetError) as exc:
        load_labelled(path)
    assert [(p.line, p.field) for p in exc.value.problems] == [(2, "text"), (3, "label"), (4, "label")]
    assert "line 3, field 'label': is missing" in str(exc.value)

    one_class = write_jsonl(tmp_path / "one.jsonl",
                            [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}])
    with pytest.raises(DatasetError, match="at least two classes.*only 'x'"):
        load_labelled(one_class)
    csv = tmp_path / "cols.csv"
    csv.write_text("sentence,label\nhi,1\n")
    with pytest.raises(DatasetError) as exc:
        load_labelled(csv)
    assert (exc.value.line, exc.value.field) == (1, "text")


@pytest.mark.parametrize("n_classes", [2, 3])
def test_probe_probabilities_match_scikit_learn(n_classes: int) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(n_classes)
    x = rng.standard_normal((60, 8))
    y = np.array([f"c{i % n_classes}" for i in range(60)])
    x[:, 0] += np.array([int(v[1]) for v in y])  # make the classes learnable
    model = LogisticRegression().fit(x, y)
    probe = Probe.from_sklearn(model, "emb")
    np.testing.assert_allclose(probe.probabilities(x), model.predict_proba(x), rtol=1e-9, atol=1e-12)


def test_registry_round_trip_overwrite_and_mismatch(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    texts, labels = sentiment()
    data = write_jsonl(tmp_path / "s.jsonl",
                       [{"text": t, "label": lab} for t, lab in zip(texts, labels, strict=True)])
    registry = ClassifierRegistry(tmp_path / "classifiers")
    record = train_and_register("sentiment", data, embedder, registry, seed=1)
    assert record.labels == ["negative", "positive"] and record.embedder == "fake-bow"
    assert record.metrics["n_train"] + record.metrics["n_val"] == 40 and len(record.dataset_hash) == 64

    again = ClassifierRegistry(tmp_path / "classifiers")
    assert [r.name for r in again.list()] == ["sentiment"]
    assert again.get("sentiment") == record
    probe = again.load("sentiment", embedder)
    queries = [texts[0], texts[-1]]  # one positive, one negative training sentence
    trained, _ = train_probe(texts, labels, embedder, seed=1)
    assert probe.predict(queries, embedder) == trained.predict(queries, embedder)
    assert [p["label"] for p in probe.predict(queries, embedder)] == ["positive", "negative"]
    assert sorted(p.name for p in (tmp_path / "classifiers" / "sentiment").iterdir()) == \
        ["classifier.json", "coef.npy", "intercept.npy"]

    with pytest.raises(TuningError, match="already exists"):
        train_and_register("sentiment", data, embedder, registry)
    train_and_register("sentiment", data, embedder, registry, seed=2, overwrite=True)
    assert [p.name for p in (tmp_path / "classifiers").iterdir()] == ["sentiment"], "no leftovers"

    with pytest.raises(ClassifierMismatch, match="fake-bow"):
        registry.load("sentiment", FakeEmbedder(dim=32))
    other = FakeEmbedder()
    other.name = "another-model"
    with pytest.raises(ClassifierMismatch):
        probe.predict(queries, other)

    registry.delete("sentiment")
    with pytest.raises(ClassifierNotFound):
        registry.get("sentiment")
    with pytest.raises(ValueError, match="classifier name"):
        registry.get("../x")


def test_real_embedder_beats_the_majority_baseline(real_embedder) -> None:  # type: ignore[no-untyped-def]
    texts, labels = sentiment()
    probe, metrics = train_probe(texts, labels, real_embedder, val_fraction=0.25, seed=0)
    assert metrics["n_val"] == 10 and metrics["n_per_class"] == {"negative": 20, "positive": 20}
    assert metrics["val_accuracy"] > metrics["val_majority_baseline"]
    assert metrics["val_accuracy"] >= 0.8 and metrics["val_macro_f1"] >= 0.8
    unseen = probe.predict(["The museum tour was fantastic, I adored it.",
                            "The museum tour was dreadful, I regret going."], real_embedder)
    assert [p["label"] for p in unseen] == ["positive", "negative"]
    assert abs(sum(unseen[0]["scores"].values()) - 1.0) < 1e-5
