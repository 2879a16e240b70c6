"""The answerability classifier: features, scoring, refusing under the threshold, fitting."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from generation.answer_types import asked_kind, missing_kind
from generation.answerability import (
    DEFAULT_MODEL,
    FEATURES,
    VERIFIED,
    AnswerabilityModel,
    features,
    focus_in,
    head_phrase,
    names_in,
    type_mismatch,
)
from generation.grounding import REFUSAL, Passage
from generation.rag import AskConfig, RagAnswerer
from retrieval.types import Hit
from tests.generation.fakes import ScriptedGenerator
from tuning.answerability import choose_threshold, fit_answerability
from tuning.errors import TuningError

SHOWN = [Passage(n=1, text="Notre Dame\nThe Grotto is a replica of the grotto at Lourdes, France.",
                 source="nd.txt", page=None, score=0.7),
         Passage(n=2, text="The university has a library of 3 million volumes.", source="nd.txt",
                 page=None, score=0.6)]


def test_features_measure_how_the_answer_line_covers_the_question() -> None:
    on = features("The grotto at Notre Dame is a replica of which grotto?", SHOWN, "Lourdes [1]",
                  {"refusal_margin": -3.0, "mean_logprob": -0.2})
    off = features("Who designed the library building?", SHOWN, "Lourdes [1]", {})
    assert set(on) == set(FEATURES) - set(VERIFIED)  # those need a verifier: verified()
    assert on["answer_line_coverage"] > off["answer_line_coverage"]
    assert on["best_score"] == 0.7 and on["refusal_margin"] == -3.0 and on["answer_words"] == 2
    assert features("x?", SHOWN, "nowhere to be found", {})["answer_line_coverage"] == 0.0


def _model(threshold: float) -> AnswerabilityModel:
    lexical = [f for f in FEATURES if f not in VERIFIED]
    weights = dict.fromkeys(lexical, 0.0) | {"answer_line_coverage": 4.0}
    return AnswerabilityModel(weights=weights, bias=0.0, mean=dict.fromkeys(lexical, 0.5),
                              scale=dict.fromkeys(lexical, 1.0), threshold=threshold)


def test_score_is_monotone_in_a_positive_weight() -> None:
    m = _model(0.5)
    low = dict.fromkeys(FEATURES, 0.0)
    assert m.score(low) < m.score(low | {"answer_line_coverage": 1.0})
    assert 0.0 < m.score(low) < 1.0


def _hits() -> list[Hit]:
    return [Hit(chunk_id=i, doc_id="nd", source=p.source, page=None, text=p.text, score=p.score,
                metadata={}) for i, p in enumerate(SHOWN, 1)]


@pytest.mark.parametrize(("threshold", "refused"), [(0.99, True), (0.01, False)])
def test_an_answer_under_the_threshold_is_refused(threshold: float, refused: bool) -> None:
    gen = ScriptedGenerator(lambda _: "Lourdes [1]")
    config = AskConfig(answerability=_model(threshold), focus_sentences=0)
    answer = RagAnswerer(lambda: gen).answer("Who built the library?", _hits(), config)
    assert answer.refused is refused
    assert answer.answerable_score is not None and 0 <= answer.answerable_score <= 1
    assert (answer.answer == REFUSAL) is refused
    if refused:
        assert "answerable_score" in (answer.refusal_reason or "")


def test_an_answer_without_the_kind_of_thing_asked_is_refused_whatever_it_scores() -> None:
    gen = ScriptedGenerator(lambda _: "a replica of the grotto at Lourdes [1]")
    config = AskConfig(answerability=_model(0.01), focus_sentences=0)
    asked = RagAnswerer(lambda: gen).answer("Why is the Grotto a replica of the grotto at Lourdes?",
                                            _hits(), config)
    assert asked.refused and "asks for a reason" in (asked.refusal_reason or "")
    what = RagAnswerer(lambda: gen).answer("What is the Grotto a replica of?", _hits(), config)
    assert not what.refused  # no particular kind asked


@pytest.mark.parametrize(("question", "kind"), [
    ("Why did the council close the pool?", "reason"),
    ("For what reason was the road closed?", "reason"),
    ("What is the phone number for the help desk?", "phone"),
    ("Which minimum phone operating system do the apps need?", None),
    ("What is the email address of the Facilities Manager?", "email"),
    ("What is the council's website?", "web"),
    ("How much does a day's parking cost?", "money"),
    ("What is the fee for a replacement card?", "money"),
    ("What was the company's annual revenue in 2024?", "money"),
    ("How much paid leave does a new parent get?", "number"),  # an amount of leave, not money
    ("How much storage does the Team plan include?", "number"),
    ("When was the office opened?", "date"),
])
def test_asked_kind_reads_the_finer_kinds(question: str, kind: str | None) -> None:
    assert asked_kind(question) == kind


def test_finer_kinds_are_held_by_their_own_forms() -> None:
    assert missing_kind("Why was the editor removed?", "The editor was removed in version 6.9 [1].") \
        == "a reason"
    assert missing_kind("Why was the editor removed?", "It was removed because it was slow [1].") is None
    assert missing_kind("What is the phone number for support?", "Call 0161 496 0000 [1].") is None
    assert missing_kind("What is the phone number for support?", "Desks 45, opened 2020 [1].") \
        == "a telephone number"
    assert missing_kind("What is the email address of HR?", "Write to hr@example.com [1].") is None
    assert missing_kind("What is the email address of HR?", "HR is on extension 2214 [1].") \
        == "an email address"
    assert missing_kind("What is the fee for a card?", "A card costs £5 [1].") is None
    assert missing_kind("What is the fee for a card?", "Cards are issued in 5 days [1].") \
        == "an amount of money"
    assert missing_kind("When was it opened?", "It has 45 desks [1].") is None  # dates: the classifier's


def test_a_year_is_not_the_digits_of_a_thousands_group_or_a_version() -> None:
    assert type_mismatch("When will the bug be fixed?", "Tables over 2,000 rows are slow [1].") == 1.0
    assert type_mismatch("When will the bug be fixed?", "It came in version 6.9 [1].") == 1.0
    assert type_mismatch("When did it end?", "Until 1971, when Rawls wrote [1].") == 0.0
    assert type_mismatch("When did it end?", "It ended on 12/03/2024 [1].") == 0.0


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    m = _model(0.3)
    m.save(tmp_path / "m.json")
    assert AnswerabilityModel.load(tmp_path / "m.json") == m
    (tmp_path / "bad.json").write_text(json.dumps({"weights": {}}))
    with pytest.raises(ValueError, match="answerability model"):
        AnswerabilityModel.load(tmp_path / "bad.json")


def test_the_packaged_model_loads_and_says_what_it_was_fitted_on() -> None:
    if not DEFAULT_MODEL.exists():
        pytest.skip("no packaged answerability model yet")
    m = AnswerabilityModel.load()
    assert "calib" in m.record["fitted_on"] and m.record["max_false_refusal"] <= 0.05


def test_fit_separates_and_holds_the_false_refusal_budget() -> None:
    rng = random.Random(0)
    rows = []
    for i in range(200):
        answerable = i % 4 != 0
        x = {f: rng.gauss(0, 1) for f in FEATURES}
        x["answer_line_coverage"] += 1.5 if answerable else -1.5
        rows.append((x, answerable))
    model = fit_answerability(rows, max_false_refusal=0.05)
    assert model.weights["answer_line_coverage"] > 1.0
    pos = [model.score(x) < model.threshold for x, y in rows if y]
    neg = [model.score(x) < model.threshold for x, y in rows if not y]
    assert sum(pos) / len(pos) <= 0.05
    assert sum(neg) / len(neg) > 0.5
    with pytest.raises(TuningError, match="both kinds"):
        fit_answerability([(x, True) for x, _ in rows])


def test_earlier_refusals_use_up_the_budget() -> None:
    scores, labels = [0.1, 0.2, 0.3, 0.4, 0.9], [True] * 4 + [False]
    free, _ = choose_threshold(scores, labels, already_refused=0, answerable_total=20,
                               max_false_refusal=0.1)
    spent, stats = choose_threshold(scores, labels, already_refused=2, answerable_total=20,
                                    max_false_refusal=0.1)
    assert free == 0.3  # refuses 0.1 and 0.2: 2 of 20
    assert sum(s < spent for s in scores[:4]) == 0  # the 2 already refused are the whole budget
    assert stats["fit_false_refusal"] == 0.1
    over, _ = choose_threshold(scores, labels, already_refused=5, answerable_total=20,
                               max_false_refusal=0.1)
    assert over == 0.0


def test_a_model_fits_only_the_adapter_it_was_fitted_on() -> None:
    fitted = AnswerabilityModel(**{**_model(0.5).__dict__, "record": {
        "run_settings": {"adapter": "grounded-qa"}}})
    assert fitted.fits("grounded-qa") and not fitted.fits("base") and not fitted.fits("tone")
    base = AnswerabilityModel(**{**_model(0.5).__dict__, "record": {"run_settings": {"adapter": None}}})
    assert base.fits("base") and not base.fits("grounded-qa")
    assert _model(0.5).fits("anything")  # no record: the caller's choice


def test_a_model_fitted_on_one_answer_style_fits_only_that_style() -> None:
    line = AnswerabilityModel(**{**_model(0.5).__dict__, "record": {
        "run_settings": {"adapter": "grounded-qa", "answer_style": "line"}}})
    assert line.fits("grounded-qa", "line") and not line.fits("grounded-qa", "span")
    old = AnswerabilityModel(**{**_model(0.5).__dict__, "record": {
        "run_settings": {"adapter": "grounded-qa"}}})
    assert old.fits("grounded-qa", "span") and not old.fits("grounded-qa", "line")


def test_a_model_uses_only_its_own_features_and_names_unknown_ones() -> None:
    small = AnswerabilityModel(weights={"line_margin": 2.0}, bias=0.0, mean={"line_margin": 0.0},
                               scale={"line_margin": 1.0}, threshold=0.5)
    assert small.features == ("line_margin",)
    assert small.score({"line_margin": 1.0}) > 0.5 > small.score({"line_margin": -1.0})
    with pytest.raises(ValueError, match="unknown features"):
        AnswerabilityModel(weights={"vibes": 1.0}, bias=0.0, mean={"vibes": 0.0},
                           scale={"vibes": 1.0}, threshold=0.5)
    with pytest.raises(ValueError, match="mean or scale"):
        AnswerabilityModel(weights={"line_margin": 1.0}, bias=0.0, mean={}, scale={},
                           threshold=0.5)


def test_fit_on_a_subset_of_features() -> None:
    rng = random.Random(1)
    rows = [({f: rng.gauss(0, 1) + (1.0 if i % 3 else -1.0) for f in FEATURES}, bool(i % 3))
            for i in range(120)]
    model = fit_answerability(rows, features=["line_score", "question_in_passages"])
    assert model.features == ("line_score", "question_in_passages")
    with pytest.raises(TuningError, match="features must be"):
        fit_answerability(rows, features=["vibes"])


def test_line_features_come_from_the_answer_stats() -> None:
    feats = features("Where is the grotto a replica of?", SHOWN, "Lourdes [1]",
                     {"line_score": 2.5, "line_margin": 0.4, "line_semantic": 0.7})
    assert (feats["line_score"], feats["line_margin"], feats["line_semantic"]) == (2.5, 0.4, 0.7)
    assert 0 < feats["question_in_passages"] <= 1
    assert features("Where?", SHOWN, "x", {})["line_score"] == 0.0


@pytest.mark.parametrize(("question", "kind", "focus"), [
    ("What interest rate does the Authority charge on overdue bills?", "number", ["interest", "rate"]),
    ("What is the telephone number of the help desk?", "number", ["telephone", "number"]),
    ("How many people work at the depot?", "number", ["people", "work"]),
    ("How long should it take to clear?", "number", []),
    ("How much does a test cost?", "number", []),
    ("When is the next inspection due?", "date", []),
    ("In what year was the company founded?", "date", ["year"]),
    ("Who chairs the committee?", "name", []),
    ("What is the name of the Finance Director?", "name", ["finance", "director"]),
    ("What type of music did she sing?", None, ["music"]),
    ("Where is the depot?", None, []),
    ("Describe the depot.", None, []),
])
def test_head_phrase_tells_what_a_question_asks_for(question: str, kind: str | None,
                                                    focus: list[str]) -> None:
    assert head_phrase(question) == (kind, focus)


def test_type_mismatch_flags_an_answer_without_what_the_question_asks_for() -> None:
    assert type_mismatch("What is the telephone number of the desk?", "Help is in the Help tab [1].") == 1.0
    assert type_mismatch("What is the telephone number of the desk?", "Call 0161 496 0000 [1].") == 0.0
    assert type_mismatch("How many vans are electric?", "Sixty-one vans are electric [2].") == 0.0
    assert type_mismatch("When is the next meeting?", "It is held every 15 minutes [1].") == 1.0
    assert type_mismatch("When is the next meeting?", "The next meeting is on 18 June [1].") == 0.0
    assert type_mismatch("Who chairs the Board?", "The Board meets every month [1].") == 1.0
    assert type_mismatch("Who chairs the Board?", "The Board is chaired by Priya Oduya [1].") == 0.0
    assert type_mismatch("Where is the depot?", "Nowhere [1].") == 0.0  # no expected type
    # a clock time, or a time after an event, answers "when" too; a frequency does not
    assert type_mismatch("At what time does maintenance start?", "Maintenance runs 02:00 to 04:00.") == 0.0
    assert type_mismatch("When do tokens expire?", "Tokens expire after 90 days [1].") == 0.0
    assert type_mismatch("When do tokens expire?", "Tokens are made in Settings [1].") == 1.0


def test_names_and_focus_are_looked_for_in_the_cited_passages() -> None:
    q = "What is the storage capacity of Gorsedene Reservoir?"
    cited = "Tallowford Reservoir\nTreated water storage capacity 45 ML"
    assert names_in(q, cited) == 0.5 and names_in(q, "Gorsedene Reservoir holds 3 ML") == 1.0
    assert names_in("what is it?", "anything") == 1.0  # a question without names
    assert focus_in(q, cited) == 1.0 and focus_in("What interest rate applies?", cited) == 0.0
    feats = features("What interest rate does Notre Dame charge?", SHOWN, "Lourdes [1]", {})
    assert feats["names_in_cited"] == 1.0 and feats["focus_in_cited"] == 0.0
    assert features("Which grotto in France?", SHOWN, "3 million [2]", {})["names_in_cited"] == 0.0


def test_row_weights_give_a_small_set_its_say() -> None:
    rng = random.Random(1)
    # a large set where the feature barely matters, and a small one where it decides
    big = [({"type_mismatch": float(rng.random() < 0.5)}, rng.random() < 0.8) for _ in range(400)]
    small = [({"type_mismatch": 1.0}, False)] * 20 + [({"type_mismatch": 0.0}, True)] * 20
    plain = fit_answerability(big + small, features=["type_mismatch"])
    weighted = fit_answerability(big + small, features=["type_mismatch"],
                                 weights=[1.0] * 400 + [10.0] * 40)
    assert weighted.weights["type_mismatch"] < plain.weights["type_mismatch"] < 0.5
    with pytest.raises(TuningError, match="one positive number per row"):
        fit_answerability(big, features=["type_mismatch"], weights=[1.0])
