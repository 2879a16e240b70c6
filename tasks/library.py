"""The task templates ragtune ships, and their evaluation sets (tasks/data/NAME.jsonl).

Each evaluation item is a JSON object: `input`, `answer` (a label, a string or a dict of fields),
and where the task has them `context` (a passage), `choices`, `target` (the word to resolve) and
`answers` (every accepted answer). The sets are small (20-24 items) so that every task can be scored
in every mode on a CPU; where they come from is in the README ("Task templates").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import TaskInputError, TaskNotFound
from .templates import Shot, TaskInput, TaskTemplate

DATA = Path(__file__).resolve().parent / "data"

QA = TaskTemplate(
    name="qa", title="question answering over a passage or a collection",
    instruction="Answer the question using only the passage. Reply with the shortest phrase from "
                "the passage that answers it.",
    kind="text", metric="contains", also=("exact", "token_f1"), input_label="Question",
    needs_context=True, first_line=True, max_new_tokens=24, cot_max_new_tokens=64,
    shots=(Shot(TaskInput("What colour is the roof of the station?",
                          context="The station, built in 1902, has a green copper roof and two "
                                  "platforms."), "a green copper roof"),
           Shot(TaskInput("Who founded the bakery?",
                          context="The bakery was founded by Ada Moss in a former post office."),
                "Ada Moss")))

SENTIMENT = TaskTemplate(
    name="sentiment", title="sentiment of a text: positive or negative",
    instruction="Classify the sentiment of the text. Reply with one word: positive or negative.",
    kind="choice", metric="accuracy", choices=("positive", "negative"),
    question="Sentiment ({choices}):", max_new_tokens=8, cot_max_new_tokens=48,
    train_file="sentiment_train.jsonl",
    shots=(Shot(TaskInput("The waiter was kind and the pasta was perfect."), "positive"),
           Shot(TaskInput("My parcel never arrived and nobody answers the phone."), "negative")))

TRANSLATION = TaskTemplate(
    name="translation", title="translation from English to French",
    instruction="Translate the English text into French. Reply with the French translation only.",
    kind="text", metric="chrf", also=("token_f1",), input_label="English", question="French:",
    first_line=True, max_new_tokens=40, cot_max_new_tokens=64,
    shots=(Shot(TaskInput("The dog is in the garden."), "Le chien est dans le jardin."),
           Shot(TaskInput("We are hungry."), "Nous avons faim.")))

COREFERENCE = TaskTemplate(
    name="coreference", title="coreference resolution: what a pronoun refers to",
    instruction="Read the sentence and say who or what the quoted word refers to. Reply with one of "
                "the options, exactly as written.",
    kind="choice", metric="accuracy", input_label="Sentence",
    question='Who or what does "{target}" refer to: {choices}?',
    max_new_tokens=8, cot_max_new_tokens=48,
    shots=(Shot(TaskInput("The bottle would not fit in the bag because it was too tall.",
                          choices=("the bottle", "the bag"), target="it"), "the bottle"),
           Shot(TaskInput("Mia lent her umbrella to Ben because he had forgotten his.",
                          choices=("Mia", "Ben"), target="he"), "Ben")))

PARSING = TaskTemplate(
    name="parsing", title="parsing a sentence into JSON fields (name, age, city, job)",
    instruction='Extract the person\'s details as JSON with the keys "name", "age" (a number), '
                '"city" and "job". Reply with the JSON object only.',
    kind="json", metric="field_accuracy", also=("valid_json",), fields=("name", "age", "city", "job"),
    max_new_tokens=48, cot_max_new_tokens=96,
    shots=(Shot(TaskInput("Nina Berg, 40, is a vet in Bergen."),
                '{"name": "Nina Berg", "age": 40, "city": "Bergen", "job": "vet"}'),))

SUMMARISATION = TaskTemplate(
    name="summarisation", title="summarisation in one sentence",
    instruction="Summarise the text in one short sentence.",
    kind="text", metric="token_f1", input_label="Text", question="Summary:", first_line=True,
    max_new_tokens=48, cot_max_new_tokens=80,
    shots=(Shot(TaskInput("The swimming pool will close for two weeks in July while the changing "
                          "rooms are rebuilt. Members can use the pool in the next town for free "
                          "during the closure."),
                "The pool closes for two weeks in July for rebuilding; members may swim free in "
                "the next town."),))

TEMPLATES: dict[str, TaskTemplate] = {t.name: t for t in (
    QA, SENTIMENT, TRANSLATION, COREFERENCE, PARSING, SUMMARISATION)}


def get_template(name: str) -> TaskTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise TaskNotFound(f"task {name!r} not found (tasks: {', '.join(TEMPLATES)})") from None


def eval_items(template: TaskTemplate) -> list[dict[str, Any]]:
    """The template's evaluation set."""
    path = DATA / f"{template.name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def item_input(item: dict[str, Any]) -> TaskInput:
    return TaskInput(text=item["input"], context=item.get("context", ""),
                     choices=tuple(item.get("choices", ())), target=item.get("target", ""))


def train_split(template: TaskTemplate) -> tuple[list[str], list[str]]:
    """(texts, labels) a linear probe is trained on: disjoint from the evaluation set."""
    if not template.train_file:
        raise TaskInputError(f"task {template.name!r} is not a classification with a labelled split")
    rows = [json.loads(line) for line in (DATA / template.train_file).read_text().splitlines()
            if line.strip()]
    return [r["text"] for r in rows], [r["label"] for r in rows]
