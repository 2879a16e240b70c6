"""Reranker training: the held-out split, the pairs from SciFact-style qrels and SQuAD articles, the
(top-n, weight) sweep, and a tiny training run that leaves a loadable CrossEncoder directory."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from retrieval.rerank import CrossEncoderReranker
from retrieval.types import Hit
from tests.retrieval.test_rerank import tiny_cross_encoder
from tuning.reranker import (
    RerankerData,
    dev_split,
    scifact_pairs,
    squad_pairs,
    sweep,
    train_reranker,
)
from tuning.squad import Article, Paragraph, Question, split_of
from tuning.verifier import Pair, VerifierTraining


def _hit(i: int, doc: str) -> Hit:
    return Hit(chunk_id=i, doc_id=doc, source=doc, page=None, text=f"text of {doc} #{i}", score=0.5,
               metadata={"id": doc})


def _key(h: Hit) -> str:
    return str(h.metadata["id"])


def test_dev_split_is_disjoint_stable_and_about_the_share() -> None:
    ids = [str(i) for i in range(1000)]
    train, dev = dev_split(ids, 0.2)
    assert set(train) | set(dev) == set(ids) and not set(train) & set(dev)
    assert 150 < len(dev) < 250 and dev_split(ids, 0.2) == (train, dev)
    with pytest.raises(ValueError, match="dev_share"):
        RerankerData(dev_share=1.0)


def test_scifact_pairs_take_the_best_chunk_of_each_relevant_doc_and_hard_negatives() -> None:
    ranked = [_hit(0, "a"), _hit(1, "rel"), _hit(2, "b"), _hit(3, "rel"), _hit(4, "c")]
    pairs = scifact_pairs({"q1": "claim one", "q2": "claim two"}, {"q1": {"rel": 1}, "q2": {"x": 1}},
                          lambda q, depth: ranked[:depth], _key,
                          RerankerData(negatives=2, neg_depth=4, pos_depth=5), random.Random(0))
    pos = [p for p in pairs if p.label == 1]
    neg = [p for p in pairs if p.label == 0]
    assert [p.line for p in pos] == ["text of rel #1"], "one positive: the best chunk of the doc"
    assert len(neg) == 2 and all("rel" not in p.line and "#4" not in p.line for p in neg)
    assert all(p.question == "claim one" for p in pairs), "a query with no positive found gives none"


def _article(title: str) -> Article:
    def para(i: int, words: str) -> Paragraph:
        return Paragraph(f"Paragraph {i} about {words}.",
                         (Question(f"{title}-{i}", f"what about {words}?", (words,), True),))
    return Article(title, (para(0, "red pumps"), para(1, "blue valves"), para(2, "green pipes")))


def test_squad_pairs_use_train_articles_and_other_paragraphs_as_negatives() -> None:
    titles = [f"Article_{i}" for i in range(40)]
    train = [t for t in titles if split_of(t) == "train"]
    held = [t for t in titles if split_of(t) != "train"]
    pairs = squad_pairs([_article(t) for t in titles], RerankerData(squad_negatives=1),
                        random.Random(0))
    assert len(pairs) == 2 * 3 * len(train) and held
    for p in pairs:
        words = p.question[len("what about "):-1]
        assert (words in p.line) == (p.label == 1)


def test_sweep_finds_that_a_perfect_reranker_helps() -> None:
    hits = [_hit(0, "a"), _hit(1, "b"), _hit(2, "rel")]
    runs = [(hits, [0.0, 0.1, 0.9], {"rel": 1})]
    table = sweep(runs, _key, top_ns=(1, 3), weights=(0.0, 1.0))
    assert table[(3, 1.0)] == 1.0 and table[(3, 0.0)] < 1.0 and table[(1, 1.0)] == table[(3, 0.0)]


def test_a_tiny_training_run_leaves_a_cross_encoder_with_its_record(tmp_path: Path) -> None:
    base = tiny_cross_encoder(tmp_path / "base")
    pairs = [Pair("which pump?", "the red pump", 1, "pos"), Pair("which pump?", "a valve", 0, "neg")]
    out = tmp_path / "rerankers" / "tiny"
    record = train_reranker(str(base), pairs * 4, out,
                            VerifierTraining(steps=3, batch_size=4, warmup=1, max_length=32,
                                             layers=None), {"base": "tiny"})
    assert record["pairs"] == 8 and not (tmp_path / "rerankers" / "tiny.adapter").exists()
    saved = json.loads((out / "reranker.json").read_text())
    assert saved["base_model"] == "tiny" and saved["training"]["steps"] == 3
    scores = CrossEncoderReranker(out).score("which pump?", ["the red pump", "a valve"])
    assert len(scores) == 2
