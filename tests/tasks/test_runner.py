"""Running templates through a scripted generator: one input, a whole evaluation set (one by one and
in batches), and a linear probe on the fake embedder."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from generation.generator import Messages, SamplingConfig
from tasks import evaluate, evaluate_probe, get_template, run_task, train_template_probe
from tasks.library import eval_items
from tasks.templates import TaskInput
from tests.fakes import FakeEmbedder
from tests.generation.fakes import ScriptedGenerator


def _always(reply: str) -> ScriptedGenerator:
    return ScriptedGenerator(lambda _: reply)


def test_run_parses_the_reply_and_caps_tokens() -> None:
    gen = _always("Reasoning: it is kind. Answer: positive")
    run = run_task(get_template("sentiment"), gen, TaskInput("So kind!"), "cot")
    assert run.output == "positive" and run.mode == "cot" and run.reply.startswith("Reasoning")
    assert "step by step" in gen.calls[0][0]["content"]
    short = run_task(get_template("sentiment"), _always("one two three four five six seven eight nine"),
                     TaskInput("x"), max_new_tokens=2)
    assert short.reply == "one two" and short.output is None


def test_evaluate_scores_each_item_and_means_them() -> None:
    t = get_template("sentiment")
    items = eval_items(t)
    score = evaluate(t, _always("positive"), "zero_shot")
    share = sum(it["answer"] == "positive" for it in items) / len(items)
    assert score.n == len(items) and score.score == pytest.approx(share, abs=1e-4)
    assert [i["output"] for i in score.items] == ["positive"] * len(items)


def test_json_task_reports_field_accuracy_and_valid_json() -> None:
    t = get_template("parsing")
    items = eval_items(t)[:2]
    gen = ScriptedGenerator(lambda m: '{"name": "Maria Lopez", "age": 34, "city": "Lima"}'
                            if "Maria" in m[-1]["content"] else "I do not know")
    score = evaluate(t, gen, "zero_shot", items=items)
    assert score.score == pytest.approx((2 / 4 + 0) / 2) and score.also == {"valid_json": 0.5}


class _Batcher(ScriptedGenerator):
    def __init__(self) -> None:
        super().__init__(lambda m: "negative")
        self.batches: list[int] = []

    def generate_batch(self, conversations: Sequence[Messages], sampling: SamplingConfig,
                       adapter: str | None = None) -> list[str]:
        self.batches.append(len(conversations))
        return ["negative"] * len(conversations)


def test_a_batching_generator_gets_the_set_in_batches() -> None:
    t = get_template("sentiment")
    gen = _Batcher()
    score = evaluate(t, gen, "few_shot", batch_size=10, limit=23)
    assert gen.batches == [10, 10, 3] and not gen.calls and score.n == 23


def test_the_probe_learns_the_split_and_is_scored_on_the_eval_set() -> None:
    score = evaluate_probe(get_template("sentiment"), FakeEmbedder(dim=256))  # same seed: same probe
    assert score.mode == "linear_probe" and score.n == len(eval_items(get_template("sentiment")))
    assert all(i["output"] in ("positive", "negative") for i in score.items)
    embedder = FakeEmbedder(dim=256)
    probe, metrics = train_template_probe(get_template("sentiment"), embedder)
    assert metrics["n_train"] == 40 and metrics["n_val"] == 0  # every labelled example
    expected = [p["label"] for p in probe.predict([i["input"] for i in score.items], embedder)]
    assert [i["output"] for i in score.items] == expected
    assert score.score == pytest.approx(sum(i["accuracy"] for i in score.items) / score.n, abs=1e-4)
