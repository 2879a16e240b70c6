"""Task templates as pure functions: prompts per mode, replies read back, the shipped sets and the
scoring rules."""

from __future__ import annotations

import pytest

from tasks import MODES, TEMPLATES, TaskInputError, TaskNotFound, get_template
from tasks.library import eval_items, item_input, train_split
from tasks.scoring import METRICS, chrf, contains, field_accuracy, token_f1
from tasks.templates import TaskInput, pick_choice, read_fields


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_every_eval_item_builds_a_prompt_in_every_mode_and_scores(name: str) -> None:
    template = TEMPLATES[name]
    items = eval_items(template)
    assert 20 <= len(items) <= 40
    for item in items:
        for mode in MODES:
            messages = template.messages(item_input(item), mode)
            assert messages[0]["role"] == "system" and messages[-1]["role"] == "user"
            assert item["input"] in messages[-1]["content"]
        for metric in (template.metric, *template.also):  # the reference scores itself perfectly
            assert METRICS[metric](item["answer"], item) == 1.0, (name, metric, item)


def test_modes_differ_as_documented() -> None:
    t = get_template("sentiment")
    item = TaskInput("I loved it.")
    zero, few, cot = (t.messages(item, m) for m in MODES)
    assert len(zero) == 2 and len(few) == 2 + 2 * len(t.shots)
    assert [m["role"] for m in few[1:-1]] == ["user", "assistant"] * len(t.shots)
    assert "step by step" in cot[0]["content"] and "step by step" not in zero[0]["content"]
    assert "positive or negative" in zero[-1]["content"]


def test_inputs_a_template_cannot_take_are_refused() -> None:
    with pytest.raises(TaskInputError, match="needs a passage"):
        get_template("qa").messages(TaskInput("Who?"), "zero_shot")
    with pytest.raises(TaskInputError, match="target"):
        get_template("coreference").messages(TaskInput("A met B; he left.", choices=("A", "B")),
                                             "zero_shot")
    with pytest.raises(TaskInputError, match="two `choices`"):
        get_template("coreference").messages(TaskInput("A left.", target="A"), "zero_shot")
    with pytest.raises(TaskInputError, match="mode 'greedy'"):
        get_template("sentiment").messages(TaskInput("x"), "greedy")
    with pytest.raises(TaskNotFound, match="tasks: qa, sentiment"):
        get_template("poetry")


def test_choices_are_read_by_first_mention_and_last_word() -> None:
    choices = ("the trophy", "the suitcase")
    assert pick_choice("The suitcase, not the trophy.", choices) == "the suitcase"
    assert pick_choice("It is the TROPHY", choices) == "the trophy"
    assert pick_choice("suitcases are big", choices) is None  # whole words only
    assert pick_choice("I cannot tell.", choices) is None


def test_cot_reads_after_the_last_answer_marker() -> None:
    t = get_template("sentiment")
    item = t.check(TaskInput("x"), "cot")
    assert t.parse("Reasoning: not negative at all.\nAnswer: positive", "cot", item) == "positive"
    assert t.parse("negative, then positive", "zero_shot", item) == "negative"


def test_json_fields_are_read_from_the_first_object() -> None:
    fields = ("name", "age")
    assert read_fields('Sure! {"Name": "Ann", "age": 3, "x": 1} done', fields) == {"name": "Ann", "age": 3}
    assert read_fields('{"name": "a"} {"name": "b"}', fields) == {"name": "a"}
    assert read_fields('{"broken": } then {"age": 4}', fields) == {"age": 4}
    assert read_fields("no json here", fields) is None


def test_scores() -> None:
    assert contains("It was the Main Building.", ["the main building"]) == 1.0
    assert contains("Mainly", ["main"]) == 0.0
    assert token_f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)
    assert chrf("Le chat dort.", "Le chat dort.") == 1.0
    assert 0.0 < chrf("Le chat mange.", "Le chat dort.") < 1.0
    assert chrf("", "Le chat") == 0.0
    expected = {"name": "Ann Lee", "age": 30, "city": "Oslo", "job": "vet"}
    assert field_accuracy({"name": "ann lee", "age": "30", "city": "Bergen"}, expected) == 0.5
    assert field_accuracy(None, expected) == 0.0


def test_the_probe_split_is_labelled_and_disjoint_from_the_eval_set() -> None:
    t = get_template("sentiment")
    texts, labels = train_split(t)
    assert set(labels) == set(t.choices) and len(texts) >= 20
    assert not set(texts) & {it["input"] for it in eval_items(t)}
    with pytest.raises(TaskInputError):
        train_split(get_template("qa"))
