"""SQuAD knowledge bases and grounded-QA records (tuning.squad) on tiny inline articles: the hash split,
what write_kb leaves out and labels unanswerable, and the citation, hard negatives, unanswerable share
and skip counts of build_examples, with a fake search and serving-shaped render."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from generation.grounding import REFUSAL, Passage, build_messages
from generation.rag import to_passages
from retrieval.types import Hit
from tuning.datasets import load_samples
from tuning.squad import (
    Article,
    Paragraph,
    Question,
    article_text,
    build_examples,
    doc_name,
    load_squad,
    split_of,
    write_kb,
)

Messages = list[dict[str, str]]


def _titles(split: str, n: int) -> list[str]:
    return [t for t in (f"Fake_article_{i}" for i in range(500)) if split_of(t) == split][:n]


def _article(title: str, i: int, n_paragraphs: int = 5, squad2: bool = False) -> Article:
    """Each paragraph holds a fact only it states (answer `w{i}p{j}`) and the article's river `Oxo{i}`,
    which every paragraph names, so a question about the river is answerable whatever is left out."""
    paras = []
    for j in range(n_paragraphs):
        context = (f"In the valley of {title} the river Oxo{i} runs past the mill. "
                   f"The mill keeper in year {j} was called w{i}p{j} by the villagers.")
        qs = [Question(f"{i}-{j}-a", f"Who kept the mill in year {j} at {title}?", (f"w{i}p{j}",), True),
              Question(f"{i}-{j}-b", f"Which river runs past the mill at {title}?", (f"Oxo{i}",), True)]
        if squad2 and j == 0:
            qs.append(Question(f"{i}-{j}-x", f"Who sold the mill at {title}?", (), False))
        paras.append(Paragraph(context, tuple(qs)))
    return Article(title, tuple(paras))


@pytest.fixture()
def eval_articles() -> list[Article]:
    titles = _titles("eval", 7) + _titles("train", 2)
    return [_article(t, i, squad2=(i == 1)) for i, t in enumerate(titles)]


def test_split_is_deterministic_and_forces_the_squad2_articles() -> None:
    assert split_of("Spectre_(2015_film)") == "eval"
    assert split_of("The_Legend_of_Zelda:_Twilight_Princess") == "calib"
    titles = [f"Fake_article_{i}" for i in range(500)]
    first = [split_of(t) for t in titles]
    assert first == [split_of(t) for t in titles]
    counts = Counter(first)
    assert set(counts) == {"eval", "calib", "train"}
    assert 30 <= counts["eval"] <= 85 and 30 <= counts["calib"] <= 85, counts


def test_load_squad_reads_both_answer_shapes_in_file_order(tmp_path: Path) -> None:
    rows = [{"title": "A", "context": "one", "qas": [
                {"id": "1", "question": "q1", "answers": ["x", "x", "y"], "answerable": True}]},
            {"title": "A", "context": "two", "qas": [
                {"id": "2", "question": "q2", "answers": [{"text": "z", "answer_start": 0}]},
                {"id": "3", "question": "q3", "answers": [], "answerable": False}]},
            {"title": "B", "context": "three", "qas": []}]
    path = tmp_path / "s.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    arts = load_squad(path)
    assert [a.title for a in arts] == ["A", "B"]
    assert [p.context for p in arts[0].paragraphs] == ["one", "two"]
    q1, q2, q3 = (q for p in arts[0].paragraphs for q in p.questions)
    assert q1.answers == ("x", "y") and q2.answers == ("z",) and q2.answerable
    assert q3.answers == () and not q3.answerable


def test_doc_name_and_article_text() -> None:
    assert doc_name("The_Legend_of_Zelda:_Twilight_Princess") == "The_Legend_of_Zelda_Twilight_Princess.txt"
    assert doc_name("Spectre_(2015_film)") == "Spectre_(2015_film).txt"
    assert "/" not in doc_name("../../etc/passwd") and not doc_name("../x").startswith(".")
    assert article_text("New_York", ["A.", " B. "]) == "New York\n\nA.\n\nB.\n"


def test_write_kb_leaves_out_paragraphs_and_labels_only_true_unanswerables(
        tmp_path: Path, eval_articles: list[Article]) -> None:
    summary = write_kb(eval_articles, tmp_path, "eval", n_articles=4, n_offtopic_articles=2,
                       paragraphs_per_article=4, answerable_per_article=3, n_on_topic=6, n_off_topic=4)
    docs = {p.name: p.read_text() for p in (tmp_path / "docs").iterdir()}
    assert len(docs) == summary.docs == 4
    assert 4 <= summary.paragraphs_left_out <= 8
    assert summary.paragraphs_written + summary.paragraphs_left_out == 16
    for name, text in docs.items():
        assert 2 <= text.count("The mill keeper") <= 3, f"{name}: 1-2 of 4 paragraphs left out"
    by_id = {q.id: q for a in eval_articles for p in a.paragraphs for q in p.questions}
    recs = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in recs] == [f"sq-eval-{i:04d}" for i in range(1, len(recs) + 1)]
    kb = "\n".join(docs.values()).lower()
    for r in recs:
        if r["answerable"]:
            assert r["type"] == "squad" and r["match"] == "any"
            assert r["answers"] and all(a in docs[r["doc"]] for a in r["answers"])
        else:
            assert r["doc"] is None and r["answers"] == [] and r["match"] == "none"
            assert not any(a.lower() in kb for a in by_id[r["squad_id"]].answers), r
    types = Counter(r["type"] for r in recs)
    assert types["squad"] == summary.answerable == 12
    assert types["unanswerable_on_topic"] == summary.unanswerable_on_topic >= 4
    assert types["unanswerable_off_topic"] == summary.unanswerable_off_topic == 4
    assert summary.unanswerable_squad2 == 1, "the ingested article's SQuAD 2.0 question is used"
    assert summary.rejected_answer_in_kb > 0, "river questions of left-out paragraphs are rejected"
    ingested = {json.loads(line)["doc"] for line in (tmp_path / "questions.jsonl").read_text().splitlines()}
    assert doc_name(eval_articles[1].title) in ingested
    assert not {doc_name(t) for t in summary.offtopic_articles} & set(docs)


def test_write_kb_is_deterministic_and_refuses_foreign_files(
        tmp_path: Path, eval_articles: list[Article]) -> None:
    def run(out: Path) -> None:
        write_kb(eval_articles, out, "eval", n_articles=4, n_offtopic_articles=2, paragraphs_per_article=4)

    run(tmp_path / "a")
    run(tmp_path / "b")
    assert (tmp_path / "a/questions.jsonl").read_text() == (tmp_path / "b/questions.jsonl").read_text()
    (tmp_path / "a/docs/stray.txt").write_text("old")
    with pytest.raises(ValueError, match="already holds other files"):
        run(tmp_path / "a")
    with pytest.raises(ValueError, match="holds 7 articles"):
        write_kb(eval_articles, tmp_path / "c", "eval", n_articles=6, n_offtopic_articles=2)


def _hit(i: int, text: str, score: float = 0.9) -> Hit:
    return Hit(chunk_id=i, doc_id=f"d{i}", source=f"doc{i}.txt", page=None, text=text, score=score,
               metadata={})


def _render(question: str, hits: list[Hit]) -> tuple[list[Passage], Messages] | None:
    """As serving: refuse without the model under a best score of 0.5, else number and build."""
    if not hits or hits[0].score < 0.5:
        return None
    shown = to_passages(hits)
    return shown, build_messages(question, shown)


class ScriptedSearch:
    def __init__(self, results: dict[str, list[Hit]]) -> None:
        self.results = results
        self.calls: list[tuple[str, int]] = []

    def __call__(self, question: str, k: int) -> list[Hit]:
        self.calls.append((question, k))
        return self.results[question][:k]


def test_answer_cites_the_first_shown_passage_holding_it() -> None:
    qs = [Question("a", "Where is the tower?", ("Paris",), True),
          Question("b", "What is the tower called?", ("eiffel tower",), True)]
    search = ScriptedSearch({
        "Where is the tower?": [_hit(1, "It is tall."), _hit(2, "The tower is in Paris."),
                                _hit(3, "Paris again.")],
        "What is the tower called?": [_hit(4, "The Eiffel Tower is iron.")]})
    records, report = build_examples(qs, search, _render, k=3, unanswerable_share=0.0)
    replies = {r["meta"]["id"]: r["messages"][-1]["content"] for r in records}
    assert replies == {"a": "Paris [2]", "b": "Eiffel Tower [1]"}
    assert report.kept == Counter(answerable=2) and not report.skipped
    for r in records:
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
        assert r["messages"][1]["content"].startswith("Passages:\n\n[1] (source: doc")


def test_hard_negatives_drop_every_hit_holding_the_answer() -> None:
    q = Question("h", "Who built the bridge?", ("Brunel",), True)
    hits = [_hit(1, "Brunel built it."), _hit(2, "The bridge spans the gorge."),
            _hit(3, "Isambard BRUNEL was an engineer."), _hit(4, "Tolls were charged."),
            _hit(5, "It opened in 1864."), _hit(6, "brunel again"), _hit(7, "Painted often.")]
    search = ScriptedSearch({q.question: hits})
    records, report = build_examples([q], search, _render, k=2, unanswerable_share=0.5)
    assert search.calls == [(q.question, 6)], "3*k hits fetched for a hard negative"
    assert report.kept == Counter(unanswerable_hard=1)
    (rec,) = records
    user = rec["messages"][1]["content"]
    assert "brunel" not in user.lower()
    assert "spans the gorge" in user and "Tolls" in user and "1864" not in user, "first k kept"
    assert rec["messages"][-1]["content"] == REFUSAL and rec["meta"]["kind"] == "unanswerable_hard"


def test_unanswerable_share_near_target_and_skips_counted(tmp_path: Path) -> None:
    results: dict[str, list[Hit]] = {}
    qs = []
    for i in range(80):
        text = f"How tall is tower {i}?"
        qs.append(Question(f"q{i}", text, (f"{100 + i} m",), True))
        results[text] = [_hit(3 * i, f"Tower {i} stands in field {i}."),
                         _hit(3 * i + 1, f"Tower {i} is {100 + i} m tall."),
                         _hit(3 * i + 2, f"It was painted in {1900 + i}.")]
    for i in range(4):  # shown passages miss the answer / serving refuses before the model
        results[f"How tall is tower {i}?"] = [_hit(1000 + i, f"Tower {i} is tall.")]
        results[f"How tall is tower {10 + i}?"][0] = _hit(2000 + i, "low", score=0.1)
    for i in range(6):
        text = f"Who demolished tower {i}?"
        qs.append(Question(f"u{i}", text, (), False))
        results[text] = [_hit(3000 + i, f"Tower {i} still stands.")]
    records, report = build_examples(qs, ScriptedSearch(results), _render, k=3,
                                     unanswerable_share=0.25, seed=3)
    kinds = Counter(r["meta"]["kind"] for r in records)
    assert kinds == report.kept and len(records) == sum(report.kept.values())
    assert abs(report.unanswerable_share - 0.25) <= 0.04, report
    assert kinds["unanswerable_squad2"] >= 3 and kinds["unanswerable_hard"] >= 3
    assert report.skipped["answer not in shown passages"] >= 1
    assert report.skipped["refused before the model"] >= 1
    assert sum(report.skipped.values()) + len(records) == 80 + kinds["unanswerable_squad2"]
    for r in records:
        reply = r["messages"][-1]["content"]
        if r["meta"]["kind"] == "answerable":
            n = int(reply.rsplit("[", 1)[1].rstrip("]"))
            assert n == 2 and reply.startswith(f"{100 + int(r['meta']['id'][1:])} m")
        else:
            assert reply == REFUSAL
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert len(load_samples(path)) == len(records), "datasets accepts chat records with meta"
    again, _ = build_examples(qs, ScriptedSearch(results), _render, k=3, unanswerable_share=0.25, seed=3)
    assert again == records
