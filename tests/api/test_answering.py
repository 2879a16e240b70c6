"""Which answering a served adapter gets: the answerability classifier only where it was fitted."""

from __future__ import annotations

from pathlib import Path

from api.answering import answering_config
from api.settings import Settings
from generation.answerability import AnswerabilityModel


def _classifier() -> AnswerabilityModel:
    return AnswerabilityModel(weights={"line_margin": 1.0}, bias=0.0, mean={"line_margin": 0.0},
                              scale={"line_margin": 1.0}, threshold=0.5, record={
                                  "run_settings": {"adapter": "grounded-qa", "answer_style": "line"}})


def test_the_classifier_judges_its_adapter_and_adapters_trained_to_keep_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", answer_style="line")
    clf = _classifier()
    assert answering_config(settings, "grounded-qa", clf).answerability is clf
    assert answering_config(settings, "marker", clf).answerability is None
    assert answering_config(settings, "marker", clf, keeps=["grounded-qa"]).answerability is clf
    assert answering_config(settings, "marker-2", clf, keeps=["marker", "grounded-qa"]).answerability is clf
    assert answering_config(settings, None, clf, keeps=()).answerability is None  # the base
    # another answer style reads other line rankings: not the one it was fitted on
    assert answering_config(settings, "marker", clf, keeps=["grounded-qa"],
                            answer_style="span").answerability is None
