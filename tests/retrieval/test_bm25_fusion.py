"""BM25 keyword index, rank fusion, and hybrid search finding exact wording dense search misses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.bm25 import BM25Index, tokenize
from retrieval.fusion import reciprocal_rank_fusion
from tests.fakes import FakeEmbedder
from tests.helpers import make_collection, pipeline, text_doc


def test_tokenize() -> None:
    assert tokenize("The Pumps, of Brannock's 42 ML/d!") == ["pump", "brannock", "s", "42", "ml", "d"]


def test_bm25_ranks_rare_terms_higher() -> None:
    index = BM25Index()
    index.build(np.array([10, 11, 12]), ["water water water pump", "water keyfob", "water main"])
    scores, ids = index.search("keyfob water", 3)
    assert ids[0] == 11 and list(scores) == sorted(scores, reverse=True)
    _, only = index.search("water", 3, allowed_ids=np.array([12]))
    assert only.tolist() == [12]
    assert index.search("zebra", 3)[1].tolist() == []
    with pytest.raises(ValueError, match="k1"):
        BM25Index(k1=-1)


def test_reciprocal_rank_fusion() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]], k=60)
    assert [i for i, _ in fused][:2] == [1, 3]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    with pytest.raises(ValueError, match="weights"):
        reciprocal_rank_fusion([[1]], weights=[1, 2])


def test_hybrid_finds_exact_wording_and_keeps_cosine_scores(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    coll = make_collection(tmp_path, emb)
    docs = [text_doc(f"d{i}.txt", f"the water report for zone {i} mentions pumps and valves")
            for i in range(40)]
    docs.append(text_doc("token.txt", "operators log in with a KeyFob K7 token"))
    pipeline(coll, emb).run(docs)
    # the dense query matches the zone reports; only the keyword side knows the wording
    query = "operators log in with a KeyFob K7"
    vec = emb.embed_batch(["water report pumps"])
    dense = coll.search(vec, 3, mode="dense")[0]
    hybrid = coll.search(vec, 3, query_texts=[query], mode="hybrid")[0]
    keyword = coll.search(vec, 1, query_texts=[query], mode="keyword")[0]
    keyword_weighted = coll.search(vec, 1, query_texts=["KeyFob K7"], mode="hybrid", alpha=0.0)[0]
    assert "token.txt" not in [h.source for h in dense]
    assert hybrid[0].source == "token.txt", "a verbatim phrase match comes first"
    assert keyword[0].source == keyword_weighted[0].source == "token.txt"
    expected = float(vec[0] @ emb.embed_batch([keyword[0].text])[0])
    assert keyword[0].score == pytest.approx(expected, abs=1e-5), "scores stay cosine"
    with pytest.raises(ValueError, match="needs the query texts"):
        coll.search(vec, 3, mode="hybrid")


def test_convex_fusion_keeps_margins_and_phrase_first() -> None:
    from retrieval.bm25 import phrase_first
    from retrieval.fusion import convex_fusion

    fused = convex_fusion({1: 0.9, 2: 0.5, 3: 0.3}, {3: 10.0, 2: 1.0}, alpha=0.4)
    assert [i for i, _ in fused] == [3, 1, 2]
    assert fused[0][1] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="alpha"):
        convex_fusion({}, {}, alpha=2)
    texts = {1: "nothing here", 2: "He learned they were the wife, and the\nyounger sister"}
    assert phrase_first("they were the WIFE and the younger", [1, 2], texts) == [2, 1]
    assert phrase_first("the wife", [1, 2], texts) == [1, 2], "short queries are not phrases"


def test_may_contain_keeps_every_chunk_that_holds_the_phrase() -> None:
    """The shortcut hybrid search takes before reading texts never drops a verbatim match, even
    one whose first or last word is part of a longer word in the chunk."""
    from retrieval.bm25 import phrase_first, phrase_key

    rng = np.random.default_rng(7)
    words = "the cells divide quickly in cultures of red blood and bone marrow".split()
    texts = {i: " ".join(rng.choice(words, size=30).tolist()) for i in range(200)}
    index = BM25Index()
    index.build(np.array(list(texts)), list(texts.values()))
    ids = list(texts)
    for _ in range(300):
        key = phrase_key(texts[int(rng.integers(200))])
        start = int(rng.integers(0, len(key) // 2))
        query = key[start:start + int(rng.integers(20, 60))]  # may cut words at both ends
        moved = phrase_first(query, ids, texts)
        holding = [i for i in ids if phrase_key(query) in phrase_key(texts[i])]
        if len(phrase_key(query).split()) >= 5:
            assert moved[:len(holding)] == holding and holding
            assert set(holding) <= set(index.may_contain(query, ids))
    assert index.may_contain("cells divide zebra crossing quickly", ids) == []
    assert index.may_contain("the and of in the", ids) == ids, "stop words alone prove nothing"
