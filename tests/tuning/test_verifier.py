"""Answer-verifier training data (tuning.verifier.build_pairs, sample_pairs) on a tiny inline article,
and a three-step training run on the packaged encoder that writes an adapter the serving verifier loads."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from tuning.squad import Article, Paragraph, Question
from tuning.verifier import Pair, VerifierTraining, build_pairs, sample_pairs, train_verifier

PARAGRAPH = ("The Quell lighthouse was built in 1871 by Thomas Stevenson. It stands 41 metres tall on "
             "Quell Point. The keepers left in 1994 when the light was automated. Visitors may climb "
             "the tower in summer.")
ARTICLE = Article("Quell_lighthouse", (Paragraph(PARAGRAPH, (
    Question("q1", "Who built the Quell lighthouse in 1871?", ("Thomas Stevenson",), True),
    Question("q2", "How tall is the Quell lighthouse?", ("41 metres",), True),
    Question("q3", "When did the keepers of the Quell lighthouse leave?", ("1994",), True),
    Question("q4", "What is the lighthouse painted with?", (), False),
)),))


def test_pairs_hold_the_answer_line_a_wrong_line_and_a_swapped_question() -> None:
    pairs = build_pairs([ARTICLE], random.Random(0), question_share=1.0, heading_share=0.0)
    kinds = Counter(p.kind for p in pairs)
    assert kinds["pos"] == 3 and kinds["other"] == 3  # q4 is unanswerable: no pair
    for p in pairs:
        if p.kind == "pos":
            assert p.label == 1 and any(a in p.line for a in ("Thomas Stevenson", "41 metres", "1994"))
        if p.kind == "other":
            assert p.label == 0 and p.line in PARAGRAPH
    swaps = [p for p in pairs if p.kind == "swap"]
    assert swaps, "the year 1871 and the names in q1 can be swapped"
    for p in swaps:
        assert p.label == 0
        original = next(q.question for q in ARTICLE.paragraphs[0].questions
                        if q.answers and q.answers[0] in p.line and q.question != p.question)
        assert p.question != original
        # the swapped-in year or name is not in the line any more
        changed = set(p.question.split()) - set(original.split())
        assert changed and not any(w.strip("?") in p.line for w in changed)


def test_a_word_swap_asks_about_another_thing_the_line_does_not_hold() -> None:
    pairs = build_pairs([ARTICLE], random.Random(0), question_share=1.0, heading_share=0.0)
    words = [p for p in pairs if p.kind == "word"]
    # q3's "the keepers" is in its answer line; "tower" (after "the" in another line) is not
    assert any(p.question == "When did the tower of the Quell lighthouse leave?" for p in words)
    for p in words:
        assert p.label == 0
        original = next(q.question for q in ARTICLE.paragraphs[0].questions
                        if q.answers and q.answers[0] in p.line and q.question != p.question)
        new = set(p.question.lower().split()) - set(original.lower().split())
        assert len(new) == 1 and not any(w.strip("?") in p.line.lower() for w in new)


def test_lines_may_be_read_under_the_article_title_as_serving_reads_a_heading() -> None:
    pairs = build_pairs([ARTICLE], random.Random(0), question_share=1.0, heading_share=1.0)
    assert pairs and all(p.line.startswith("Quell lighthouse: ") for p in pairs)


def test_an_answer_over_two_sentences_gives_no_pair() -> None:
    art = Article("A", (Paragraph("It was built. In 1871 by Tom.", (
        Question("q", "Who built it?", ("built. In 1871",), True),)),))
    assert build_pairs([art], random.Random(0), question_share=1.0) == []


def test_sample_is_half_answers_and_shuffled() -> None:
    rng = random.Random(0)
    pairs = [Pair("q", f"{kind}{i}", int(kind == "pos"), kind)
             for kind in ("pos", "other", "swap", "word") for i in range(40)]
    chosen = sample_pairs(pairs, 42, rng)
    assert Counter(p.kind for p in chosen) == {"pos": 21, "other": 7, "swap": 7, "word": 7}
    assert [p.kind for p in chosen] != sorted(p.kind for p in chosen)


def test_training_writes_an_adapter_the_verifier_loads(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    try:
        from retrieval.embedder import packaged_model_dir

        base = str(packaged_model_dir())
    except RuntimeError as exc:
        pytest.skip(str(exc))
    from generation.verifier import CrossEncoderVerifier

    pairs = build_pairs([ARTICLE], random.Random(0), question_share=1.0)
    record = train_verifier(base, pairs, tmp_path / "v", VerifierTraining(steps=3, batch_size=4, warmup=1),
                            {"base": "packaged-embedder"})
    saved = json.loads((tmp_path / "v" / "verifier.json").read_text())
    assert saved == record and saved["pairs"] == len(pairs) and saved["base"] == "packaged-embedder"
    scores = CrossEncoderVerifier(tmp_path / "v").score("How tall is it?", ["It is 41 m tall.", "Red."])
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
