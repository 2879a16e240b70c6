"""The rerank stage: the Reranker contract (a fake and a tiny real cross-encoder), the pure mixing
of its scores with the first stage's order, and search with the stage on."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from retrieval.errors import RerankerUnavailable
from retrieval.rerank import CrossEncoderReranker, Reranker, RerankStage, mix, rerank
from retrieval.search import search
from retrieval.types import Hit
from tests.fakes import FakeEmbedder
from tests.helpers import make_collection, pipeline, text_doc

_WORD = re.compile(r"[a-z0-9]+")


class OverlapReranker:
    """Scores a passage by the query words it holds."""

    name = "overlap"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        self.calls.append(len(passages))
        words = set(_WORD.findall(query.lower()))
        return [float(len(words & set(_WORD.findall(p.lower())))) for p in passages]


def tiny_cross_encoder(path: Path) -> Path:
    """A randomly initialised two-layer BERT with one logit, and the packaged embedder's
    tokenizer: a CrossEncoder directory as any user's would be, in a few hundred kB of weights."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from retrieval.embedder import packaged_model_dir

    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_dir()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32)
    config.num_labels = 1
    BertForSequenceClassification(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"))


class RerankerContract:
    """What every Reranker must do; subclasses give `make`."""

    def make(self, tmp_path: Path) -> Reranker:
        raise NotImplementedError

    def test_one_finite_score_per_passage_in_order(self, tmp_path: Path) -> None:
        r = self.make(tmp_path)
        assert isinstance(r, Reranker) and r.name
        passages = ["the pump moves water uphill", "valves stop backflow", "pump pump water"]
        scores = r.score("which pump moves water?", passages)
        assert len(scores) == 3 and all(isinstance(s, float) and s == s for s in scores)
        assert r.score("which pump moves water?", passages[::-1]) == pytest.approx(scores[::-1],
                                                                                   abs=1e-4)
        assert r.score("anything", []) == []


class TestOverlapReranker(RerankerContract):
    def make(self, tmp_path: Path) -> Reranker:
        return OverlapReranker()


class TestCrossEncoderReranker(RerankerContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tiny_dir: Path) -> None:
        self.dir = tiny_dir

    def make(self, tmp_path: Path) -> Reranker:
        return CrossEncoderReranker(self.dir, batch_size=2)

    def test_reads_nothing_until_used_and_names_a_missing_model(self, tmp_path: Path) -> None:
        missing = CrossEncoderReranker(tmp_path / "nowhere")  # opening reads nothing
        assert missing.weight() == 1.0, "no record: the reranker's order alone"
        with pytest.raises(RerankerUnavailable, match="not a cross-encoder directory"):
            missing.score("q", ["p"])

    def test_the_weight_comes_from_the_record(self, tmp_path: Path) -> None:
        (tmp_path / "reranker.json").write_text('{"weight": 0.6}')
        assert CrossEncoderReranker(tmp_path).weight() == 0.6


def _hits(n: int) -> list[Hit]:
    return [Hit(chunk_id=i, doc_id=f"d{i}", source=f"s{i}", page=None, text=f"t{i}",
                score=1.0 - i / 10, metadata={}) for i in range(n)]


def test_mix_weighs_reranker_scores_against_the_first_stage_order() -> None:
    assert mix([0.0, 5.0, 10.0], 1.0) == pytest.approx([0.0, 0.5, 1.0])
    assert mix([0.0, 5.0, 10.0], 0.0) == pytest.approx([1.0, 0.5, 0.0])
    assert mix([3.0, 3.0], 1.0) == [0.0, 0.0] and mix([], 0.5) == [] and mix([2.0], 0.5) == [0.5]
    with pytest.raises(ValueError, match="between 0 and 1"):
        mix([1.0], 1.5)


def test_rerank_reorders_and_keeps_scores_and_ties_in_order() -> None:
    hits = _hits(4)
    out = rerank(hits, [0.1, 0.9, 0.1, 0.5], weight=1.0)
    assert [h.chunk_id for h in out] == [1, 3, 0, 2]
    assert out[0].score == hits[1].score, "a hit keeps its cosine"
    assert [h.chunk_id for h in rerank(hits, [0.1, 0.9, 0.1, 0.5], weight=0.0)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="3 scores for 4 hits"):
        rerank(hits, [1.0, 2.0, 3.0])


def test_stage_rescores_only_its_top_n() -> None:
    scorer = OverlapReranker()
    stage = RerankStage(scorer, top_n=3)
    hits = [*_hits(3), Hit(3, "d3", "s3", None, "pump water", 0.1, {}), *_hits(6)[4:]]
    hits[2] = Hit(2, "d2", "s2", None, "water pump uphill", 0.8, {})
    out = stage.apply("pump water uphill", hits)
    assert [h.chunk_id for h in out] == [2, 0, 1, 3, 4, 5] and scorer.calls == [3]
    with pytest.raises(ValueError, match="top_n"):
        RerankStage(scorer, top_n=0)


def test_search_with_a_rerank_stage_fetches_its_top_n_and_returns_k(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    coll = make_collection(tmp_path, emb)
    docs = [text_doc(f"d{i}.txt", f"the water report for zone {i} mentions pumps") for i in range(12)]
    docs.append(text_doc("answer.txt", "zone 7 pumps were replaced in spring, the report says"))
    pipeline(coll, emb).run(docs)
    scorer = OverlapReranker()
    plain = search(coll, emb, "when were the zone 7 pumps replaced", 3)
    ranked = search(coll, emb, "when were the zone 7 pumps replaced", 3,
                    rerank=RerankStage(scorer, top_n=10))
    assert len(ranked) == 3 and scorer.calls == [10]
    assert ranked[0].source == "answer.txt"
    assert {h.chunk_id: h.score for h in plain}.get(ranked[0].chunk_id, ranked[0].score) \
        == ranked[0].score
