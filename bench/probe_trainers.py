"""Linear-probe trainers side by side: scikit-learn (the default) and Keras 3 on torch, fitting the
same head on the same embeddings, with their fit time and held-out accuracy.

    nice -n 10 python -m bench.probe_trainers [--articles 8 --per-article 120]

Two data sets, embedded once by the packaged MiniLM embedder: the sentiment task's labelled split
(40 sentences) scored on its 24-sentence evaluation set (tasks/data), and SQuAD topic routing
(questions labelled with their article's title, articles of the "train" split, 80/20 stratified split
of the questions). Writes bench/results/probe_trainers.json.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import numpy as np

from api.corpus import Corpus
from api.settings import Settings
from tasks import get_template
from tasks.library import eval_items, train_split
from tuning.probe import Probe
from tuning.probe_fit import PROBE_TRAINERS, head_fitter, import_keras
from tuning.squad import load_squad, split_of

from .common import SHARED, require, write

SQUAD = SHARED / "squad" / "train.jsonl.gz"


def squad_topics(articles: int, per_article: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    pool = [a for a in load_squad(SQUAD) if split_of(a.title) == "train"]
    rng.shuffle(pool)
    texts, labels = [], []
    for article in pool[:articles]:
        questions = [q.question for p in article.paragraphs for q in p.questions]
        for q in rng.sample(questions, min(per_article, len(questions))):
            texts.append(q)
            labels.append(article.title)
    return texts, labels


def compare(name: str, x_train: np.ndarray, y_train: list[str], x_test: np.ndarray,
            y_test: list[str], embedder: str, C: float = 1.0) -> list[dict[str, Any]]:
    classes = sorted(set(y_train))
    index = {c: i for i, c in enumerate(classes)}
    rows: list[dict[str, Any]] = []
    first: np.ndarray | None = None
    for trainer in PROBE_TRAINERS:
        started = time.perf_counter()
        coef, intercept = head_fitter(trainer).fit(x_train, np.array([index[y] for y in y_train]),
                                                   len(classes), C, seed=42)
        seconds = time.perf_counter() - started
        probe = Probe(labels=tuple(classes), coef=coef, intercept=intercept, embedder=embedder,
                      dim=x_train.shape[1])
        predicted = np.array(classes)[probe.probabilities(x_test).argmax(axis=1)]
        accuracy = float(np.mean(predicted == np.array(y_test)))
        first = predicted if first is None else first
        same = float(np.mean(predicted == first))  # test predictions shared with the first trainer
        rows.append({"data": name, "trainer": trainer, "classes": len(classes), "n_train": len(y_train),
                     "n_test": len(y_test), "fit_seconds": round(seconds, 3), "accuracy": round(accuracy, 4),
                     "same_predictions_as_sklearn": round(same, 4)})
        print(f"{name:10s} {trainer:8s} classes={len(classes)} train={len(y_train)} test={len(y_test)} "
              f"fit={seconds:.2f}s accuracy={accuracy:.3f} same-as-sklearn={same:.3f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--articles", type=int, default=8)
    p.add_argument("--per-article", type=int, default=120)
    args = p.parse_args(argv)
    require(SQUAD, "SQuAD train paragraphs")
    embedder = Corpus(Settings()).embedder
    import_keras()  # imported before any timing: the fit times are the fits alone
    sentiment = get_template("sentiment")
    texts, labels = train_split(sentiment)
    test = eval_items(sentiment)
    rows = compare("sentiment", embedder.embed_batch(texts), labels,
                   embedder.embed_batch([t["input"] for t in test]), [t["answer"] for t in test],
                   embedder.name)
    from sklearn.model_selection import train_test_split

    q, topic = squad_topics(args.articles, args.per_article)
    x = embedder.embed_batch(q)
    train, held = train_test_split(np.arange(len(q)), test_size=0.2, random_state=0, stratify=topic)
    rows += compare("squad-topic", x[train], [topic[i] for i in train], x[held], [topic[i] for i in held],
                    embedder.name)
    write("probe_trainers", {"embedder": embedder.name, "C": 1.0, "keras_epochs": 300, "rows": rows})


if __name__ == "__main__":
    main()
