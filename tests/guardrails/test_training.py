"""The labelled set, its held-out split, the measurement, dataset screening and the packaged probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrails.datasets import screen_dataset
from guardrails.errors import ScreenError
from guardrails.screen import Verdict, WordListScreen, check
from guardrails.serving import open_screen
from guardrails.training import (
    ScreenTrainConfig,
    balanced_weights,
    load_set,
    measure,
    split_set,
    train_screen,
    wordlist_examples,
)
from tests.fakes import FakeEmbedder
from tuning.probe import ClassifierRegistry


class Scripted:
    name, threshold = "scripted", 0.5

    def __init__(self, flags: list[bool]) -> None:
        self.flags = flags

    def check_batch(self, texts: list[str]) -> list[Verdict]:
        return [Verdict(f, float(f)) for f in self.flags[:len(texts)]]


def test_the_packaged_set_is_labelled_and_split_by_label_and_kind() -> None:
    rows = load_set()
    assert len(rows) > 200 and {r["label"] for r in rows} == {"offensive", "clean"}
    train, test = split_set(rows, 0.3, seed=0)
    assert len(train) + len(test) == len(rows)
    assert not {r["text"] for r in train} & {r["text"] for r in test}
    kinds = {(r["label"], r["kind"]) for r in rows}
    assert {(r["label"], r["kind"]) for r in test} == kinds, "every kind is measured"
    assert split_set(rows, 0.3, seed=0) == (train, test) != split_set(rows, 0.3, seed=1)


def test_measure_counts_precision_and_recall() -> None:
    labels = ["offensive", "offensive", "clean", "clean", "offensive"]
    m = measure(Scripted([True, False, True, False, True]), ["t"] * 5, labels)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3, abs=1e-4) and m["recall"] == pytest.approx(2 / 3,
                                                                                           abs=1e-4)


def test_train_screen_measures_only_on_text_it_did_not_train_on() -> None:
    rows = [{"text": f"you stupid moron number {i}", "label": "offensive", "kind": "a"}
            for i in range(10)] + [{"text": f"where is the blue pump {i}", "label": "clean",
                                    "kind": "b"} for i in range(10)]
    probe, metrics = train_screen(FakeEmbedder(), ["moron"], ScreenTrainConfig(
        wordlist_examples=1, held_out=0.3), rows=rows, clean=["the valve"])
    assert probe.labels == ("clean", "offensive")
    assert metrics["n_train"] == 14 and metrics["n_held_out"] == 6
    assert metrics["n_wordlist_examples"] == 1 and metrics["n_clean_extra"] == 1
    assert metrics["held_out"]["probe"]["precision"] == 1.0
    assert metrics["held_out"]["wordlist"]["recall"] == 1.0
    assert set(metrics["held_out"]) == {"probe", "wordlist", "probe_or_wordlist"}


def test_config_checks() -> None:
    with pytest.raises(ScreenError, match="held_out"):
        ScreenTrainConfig(held_out=0.0)
    with pytest.raises(ScreenError, match="threshold"):
        ScreenTrainConfig(threshold=1.5)


def test_wordlist_examples_use_letters_only_entries() -> None:
    made = wordlist_examples(["b00b", "jerk off", "moron"], 5, seed=0)
    assert len(made) == 2 and not any("b00b" in m for m in made)


def test_a_tuning_dataset_is_screened_by_line_and_field(tmp_path: Path) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_text("\n".join(json.dumps(r) for r in [
        {"messages": [{"role": "user", "content": "where is the pump?"},
                      {"role": "assistant", "content": "In the shed."}]},
        {"messages": [{"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "Ask again, moron."}]}]) + "\n")
    report = screen_dataset(chat, WordListScreen(["moron"]), batch_size=3)
    assert (report.records, report.texts, report.flagged_records) == (2, 8, 1)
    assert [(f.line, f.field) for f in report.flagged] == [(2, "messages[1].content")]
    table = tmp_path / "data.csv"
    table.write_text("text,label\nmoron,bad\nfine,good\n")
    report = screen_dataset(table, WordListScreen(["moron"]))
    assert report.records == 2 and [(f.line, f.field) for f in report.flagged] == [(2, "text")]


def test_on_another_embedder_the_packaged_probe_falls_back_to_the_word_list(tmp_path: Path) -> None:
    served = open_screen(FakeEmbedder(), 0.5)
    assert isinstance(served.screen, WordListScreen) and "word list alone" in served.note
    registry = ClassifierRegistry(tmp_path)
    with pytest.raises(Exception, match="not found"):
        open_screen(FakeEmbedder(), 0.5, registry, "mine")


def test_each_label_weighs_the_same_and_shares_split_a_labels_weight() -> None:
    w = balanced_weights(["a", "a", "a", "b"])
    assert w[:3].sum() == pytest.approx(w[3]) == pytest.approx(2.0)
    w = balanced_weights(["a", "a", "b", "b", "b"], share=[1, 1, 1, 0.5, 0.5])
    assert w[2] == pytest.approx(2 * w[3]) and w[2:].sum() == pytest.approx(w[:2].sum())


def test_train_screen_without_ordinary_texts() -> None:
    rows = [{"text": f"you stupid moron {i}", "label": "offensive", "kind": "a"} for i in range(5)] \
        + [{"text": f"the blue pump {i}", "label": "clean", "kind": "b"} for i in range(5)]
    _, metrics = train_screen(FakeEmbedder(), ["moron"], ScreenTrainConfig(), rows=rows)
    assert metrics["n_clean_extra"] == 0 and metrics["held_out"]["probe"]["recall"] == 1.0


def test_the_word_list_can_also_flag(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    rows = [{"text": f"you stupid idiot {i}", "label": "offensive", "kind": "a"} for i in range(5)] \
        + [{"text": f"the blue pump {i}", "label": "clean", "kind": "b"} for i in range(5)]
    probe, _ = train_screen(embedder, ["moron"], ScreenTrainConfig(), rows=rows)
    registry = ClassifierRegistry(tmp_path)
    registry.save("mine", probe, {})
    alone = open_screen(embedder, 0.5, registry, "mine").screen
    both = open_screen(embedder, 0.5, registry, "mine", wordlist=True).screen
    assert alone.name == "mine" and both.name == "mine+wordlist"
    assert not check(alone, "the blue pump bullshit").flagged
    assert check(both, "the blue pump bullshit").flagged
