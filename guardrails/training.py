"""The offensive-text probe: its labelled set, its training recipe and its held-out measurement.

No labelled toxicity set ships inside a PyPI package this project can install (profanity-check,
alt-profanity-check, hatesonar, valx and cuss-inspect ship fitted models only; hatecomp and
toxic-comment-collection download their data at run time), so the labelled set is written for
ragtune: `data/offensive_en.jsonl`, 271 English sentences labelled `offensive` or `clean`, each
with its kind (insults, profanity, threats, hateful generalisations, harassment, questions with
insults or profanity; knowledge-base questions and answers, innocent uses of alarming words,
complaints without abuse). A stratified
part is held out; the probe trains on the rest, plus, when asked, ordinary text labelled clean
(`clean`) and short sentences made from the `better-profanity` word list (MIT), and precision and
recall are measured on the held-out part only, beside the word list alone and either of the two.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.embedder import Embedder
from tuning.probe import Probe

from .errors import ScreenError
from .screen import AnyScreen, ProbeScreen, Screen, WordListScreen

DATA = Path(__file__).resolve().parent / "data" / "offensive_en.jsonl"
PACKAGED = Path(__file__).resolve().parent / "packaged"  # a classifier registry root
PACKAGED_NAME = "offensive"
TEMPLATES = ("you {w}", "what a {w}", "shut up, you {w}", "{w}!", "this is {w}",
             "stop being such a {w}", "look at that {w}")


@dataclass(frozen=True)
class ScreenTrainConfig:
    """How the offensive probe is trained and measured."""

    held_out: float = field(default=0.3, metadata={"help": "share of the labelled set kept out "
                                                   "of training, for precision and recall"})
    seed: int = field(default=0, metadata={"help": "seed of the split and the word-list sample"})
    C: float = field(default=1.0, metadata={"help": "inverse regularisation of the logistic head"})
    wordlist_examples: int = field(default=0, metadata={"help": "offensive training sentences "
                                                          "made from the word list (0 = none)"})
    threshold: float = field(default=0.5, metadata={"help": "probability at which a text is "
                                                    "flagged, fixed before measuring"})

    def __post_init__(self) -> None:
        if not 0.0 < self.held_out < 1.0:
            raise ScreenError(f"held_out {self.held_out!r} must be in (0, 1): a part to measure "
                              "on and a part to train on")
        if self.C <= 0:
            raise ScreenError(f"C {self.C!r} must be > 0")
        if self.wordlist_examples < 0:
            raise ScreenError(f"wordlist_examples {self.wordlist_examples!r} must be >= 0")
        if not 0.0 < self.threshold <= 1.0:
            raise ScreenError(f"threshold {self.threshold!r} must be in (0, 1]")


def load_set(path: Path = DATA) -> list[dict[str, str]]:
    """The labelled rows (text, label, kind) of a JSONL file."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [i for i, r in enumerate(rows, 1) if r.get("label") not in ("offensive", "clean")
           or not str(r.get("text", "")).strip()]
    if bad:
        raise ScreenError(f"{path}: lines {bad[:10]} need a text and a label offensive or clean")
    return rows


def split_set(rows: Sequence[dict[str, str]], held_out: float,
              seed: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(train, held-out), stratified by label and kind so each kind is seen on both sides."""
    rng = random.Random(seed)
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault((row["label"], row.get("kind", "")), []).append(row)
    train: list[dict[str, str]] = []
    test: list[dict[str, str]] = []
    for key in sorted(groups):
        group = list(groups[key])
        rng.shuffle(group)
        n = round(len(group) * held_out)
        test += group[:n]
        train += group[n:]
    return train, test


def wordlist_examples(words: Sequence[str], n: int, seed: int) -> list[str]:
    """`n` short offensive sentences, each a listed word (letters and spaces only) in a template."""
    usable = sorted({w for w in words if w.replace(" ", "").isalpha()})
    rng = random.Random(seed)
    picked = rng.sample(usable, min(n, len(usable)))
    return [rng.choice(TEMPLATES).format(w=w) for w in picked]


def balanced_weights(labels: Sequence[str], share: Sequence[float] | None = None) -> np.ndarray:
    """Sample weights giving each label the same total; `share` (default 1 each) is a sample's
    weight within its label before that."""
    weights = np.ones(len(labels)) if share is None else np.asarray(share, dtype=np.float64)
    y = np.asarray(labels, dtype=object)
    for label in set(labels):
        weights[y == label] *= len(labels) / (2 * weights[y == label].sum())
    return weights


def fit_probe(texts: list[str], labels: list[str], embedder: Embedder, C: float = 1.0,
              seed: int = 0, weights: np.ndarray | None = None) -> Probe:
    """A logistic head on the texts' embeddings; `weights` default: each label weighs the same."""
    from sklearn.linear_model import LogisticRegression

    if len(set(labels)) != 2:
        raise ScreenError(f"the offensive probe needs both labels; got {sorted(set(labels))}")
    x = embedder.embed_batch(list(texts))
    model = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    weights = balanced_weights(labels) if weights is None else weights
    return Probe.from_sklearn(model.fit(x, np.array(labels, dtype=object), sample_weight=weights),
                              embedder.name)


def measure(screen: Screen, texts: list[str], labels: list[str]) -> dict[str, Any]:
    """Precision, recall and F1 of `screen` flagging the `offensive` texts."""
    flagged = [v.flagged for v in screen.check_batch(texts)]
    truth = [label == "offensive" for label in labels]
    tp = sum(f and t for f, t in zip(flagged, truth, strict=True))
    fp = sum(f and not t for f, t in zip(flagged, truth, strict=True))
    fn = sum(t and not f for f, t in zip(flagged, truth, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "tp": tp, "fp": fp, "fn": fn, "tn": len(texts) - tp - fp - fn}


def train_screen(embedder: Embedder, words: Sequence[str], config: ScreenTrainConfig,
                 rows: Sequence[dict[str, str]] | None = None,
                 clean: Sequence[str] = ()) -> tuple[Probe, dict[str, Any]]:
    """Fit the probe on the training part, plus word-list sentences and `clean` (ordinary texts
    labelled clean, such as questions a knowledge base gets, weighing together as much as the
    written clean sentences), and measure it, the word list alone and either of them on the
    held-out part of `rows`."""
    rows = load_set() if rows is None else list(rows)
    train, test = split_set(rows, config.held_out, config.seed)
    extra = wordlist_examples(words, config.wordlist_examples, config.seed)
    texts = [r["text"] for r in train] + extra + list(clean)
    labels = [r["label"] for r in train] + ["offensive"] * len(extra) + ["clean"] * len(clean)
    # the ordinary texts together weigh as much as the written clean sentences: they widen what
    # counts as clean without drowning the written hard cases (3,000 against ~90)
    written_clean = sum(r["label"] == "clean" for r in train)
    share = [1.0] * (len(train) + len(extra)) + [written_clean / max(1, len(clean))] * len(clean)
    probe = fit_probe(texts, labels, embedder, config.C, config.seed,
                      balanced_weights(labels, share))
    wordlist = WordListScreen(words)
    probe_screen = ProbeScreen(probe, embedder, config.threshold, words=wordlist)
    test_texts, test_labels = [r["text"] for r in test], [r["label"] for r in test]
    verdicts = probe_screen.check_batch(test_texts)
    metrics: dict[str, Any] = {
        "n_train": len(train), "n_wordlist_examples": len(extra), "n_clean_extra": len(clean),
        "n_held_out": len(test),
        "held_out_offensive": test_labels.count("offensive"), "threshold": config.threshold,
        "seed": config.seed, "C": config.C, "wordlist_size": wordlist.size,
        "held_out": {"probe": measure(probe_screen, test_texts, test_labels),
                     "wordlist": measure(wordlist, test_texts, test_labels),
                     "probe_or_wordlist": measure(AnyScreen([probe_screen, wordlist]),
                                                  test_texts, test_labels)},
        "held_out_errors": [{"text": r["text"], "label": r["label"], "kind": r.get("kind", ""),
                             "score": v.score}
                            for r, v in zip(test, verdicts, strict=True)
                            if v.flagged != (r["label"] == "offensive")]}
    return probe, metrics
