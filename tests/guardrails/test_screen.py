"""The Screen contract, run against every screen, and what each screen does of its own."""

from __future__ import annotations

import numpy as np
import pytest

from guardrails.errors import ScreenError
from guardrails.screen import (
    MASK,
    REDACTED,
    AnyScreen,
    ProbeScreen,
    Screen,
    WordListScreen,
    better_profanity_words,
    check,
    check_text,
    positive_index,
    redact,
    sentences,
)
from guardrails.training import fit_probe
from tests.fakes import FakeEmbedder
from tuning.errors import ClassifierMismatch

OFFENSIVE = ["you stupid idiot", "shut up you moron", "what a stupid moron", "idiot moron loser"]
CLEAN = ["how many leave days", "where is the blue pump", "the pump moves water",
         "book a meeting room"]


class ScreenContract:
    """What every Screen must do; subclasses give `make` and a text it flags and one it passes."""

    offensive = "you stupid idiot"
    clean = "where is the blue pump"

    def make(self) -> Screen:
        raise NotImplementedError

    def test_is_a_screen_with_a_name_and_threshold(self) -> None:
        screen = self.make()
        assert isinstance(screen, Screen) and screen.name and 0 < screen.threshold <= 1

    def test_one_verdict_per_text_in_order(self) -> None:
        verdicts = self.make().check_batch([self.clean, self.offensive, self.clean])
        assert [v.flagged for v in verdicts] == [False, True, False]
        assert all(0.0 <= v.score <= 1.0 for v in verdicts)
        assert verdicts[1].score > verdicts[0].score

    def test_no_texts_no_verdicts(self) -> None:
        assert self.make().check_batch([]) == []

    def test_redact_keeps_clean_text_and_takes_out_the_offence(self) -> None:
        screen = self.make()
        assert redact(screen, self.clean) == (self.clean, check_text(screen, self.clean))
        text = f"{self.clean}? {self.offensive}."
        shown, verdict = redact(screen, text)
        assert verdict.flagged and shown.startswith(f"{self.clean}? ")
        assert "idiot" not in shown and (MASK in shown or REDACTED in shown)


    def test_one_offensive_sentence_in_a_long_text_is_flagged(self) -> None:
        screen = self.make()
        text = " ".join([f"{self.clean}."] * 4 + [f"{self.offensive}."])
        assert check_text(screen, text).flagged
        assert not check_text(screen, " ".join([f"{self.clean}."] * 4)).flagged


class TestWordListScreen(ScreenContract):
    def make(self) -> Screen:
        return WordListScreen(["idiot", "moron", "shut up"])

    def test_whole_words_any_case_and_phrases(self) -> None:
        screen = WordListScreen(["ass", "shut up"])
        assert screen.terms("Please ASSESS the class, you ASS") == ("ASS",)
        assert screen.terms("Shut up, Scunthorpe") == ("Shut up",)
        assert not check(screen, "a classic assignment").flagged

    def test_redaction_masks_only_the_listed_words(self) -> None:
        shown, _ = redact(self.make(), "Where is it, idiot? Thanks.")
        assert shown == f"Where is it, {MASK}? Thanks."

    def test_an_empty_list_is_refused(self) -> None:
        with pytest.raises(ScreenError, match="at least one word"):
            WordListScreen([" ", ""])


class TestProbeScreen(ScreenContract):
    def make(self) -> Screen:
        embedder = FakeEmbedder()
        probe = fit_probe(OFFENSIVE + CLEAN, ["offensive"] * 4 + ["clean"] * 4, embedder)
        return ProbeScreen(probe, embedder, 0.5)

    def test_flagged_is_the_score_at_the_threshold(self) -> None:
        screen = self.make()
        assert isinstance(screen, ProbeScreen)
        scores = screen.scores(["you stupid idiot", "the blue pump"])
        for threshold in (0.2, 0.5, 0.9):
            strict = ProbeScreen(screen.probe, screen.embedder, threshold)
            assert [v.flagged for v in strict.check_batch(["you stupid idiot", "the blue pump"])] \
                == [bool(s >= threshold) for s in scores]

    def test_a_probe_of_another_embedder_or_threshold_is_refused(self) -> None:
        screen = self.make()
        assert isinstance(screen, ProbeScreen)
        with pytest.raises(ClassifierMismatch, match="trained on embeddings"):
            ProbeScreen(screen.probe, FakeEmbedder(dim=32))
        with pytest.raises(ScreenError, match="threshold"):
            ProbeScreen(screen.probe, screen.embedder, 0.0)

    def test_the_word_list_names_terms_but_does_not_score(self) -> None:
        screen = self.make()
        assert isinstance(screen, ProbeScreen)
        named = ProbeScreen(screen.probe, screen.embedder, 0.5, words=WordListScreen(["pump"]))
        verdict = check(named, "where is the blue pump")
        assert verdict.terms == ("pump",) and not verdict.flagged
        assert verdict.score == check(screen, "where is the blue pump").score


class TestAnyScreen(ScreenContract):
    def make(self) -> Screen:
        return AnyScreen([WordListScreen(["idiot"]), WordListScreen(["moron"])])

    def test_either_screen_flags(self) -> None:
        verdict = check(self.make(), "moron")
        assert verdict.flagged and verdict.terms == ("moron",)


def test_positive_label() -> None:
    assert positive_index(("clean", "offensive")) == 1
    assert positive_index(("TOXIC", "fine")) == 0
    assert positive_index(("a", "b")) == 1
    with pytest.raises(ScreenError, match="means offensive"):
        positive_index(("a", "b", "c"))


def test_sentences_join_back_to_the_text() -> None:
    text = "First one. Second?! Third\nfourth line"
    assert sentences(text) == ["First one. ", "Second?! ", "Third\n", "fourth line"]
    assert "".join(sentences(text)) == text


def test_the_packaged_word_list_is_read_from_better_profanity() -> None:
    words = better_profanity_words()
    assert len(words) > 500 and "idiot" not in words and "bullshit" in words
    assert np.mean([w == w.strip() for w in words]) == 1.0
