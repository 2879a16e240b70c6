"""What a task template is: an instruction, how an input is laid out, worked examples for few-shot
prompting, and how the model's reply is read back (a choice among options, free text, or JSON fields).

`messages` builds the chat for one input in one mode; `parse` turns the reply into the task's output.
Both are pure: a Generator (generation/generator.py) sits between them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from generation.grounding import final_answer
from generation.prompting import Messages

from .errors import TaskInputError

MODES = ("zero_shot", "few_shot", "cot")
KINDS = ("choice", "text", "json")
COT = (" Think step by step: first write 'Reasoning:' and a short explanation, then write 'Answer:' "
       "followed by the final answer alone.")


@dataclass(frozen=True)
class TaskInput:
    """One input: the text, plus the passage it is about (QA), the options to choose among and the
    word the question is about (a pronoun, for coreference) where the task has them."""

    text: str
    context: str = ""
    choices: tuple[str, ...] = ()
    target: str = ""


@dataclass(frozen=True)
class Shot:
    """A worked example shown before the input in few-shot mode."""

    input: TaskInput
    output: str


@dataclass(frozen=True)
class TaskTemplate:
    name: str
    title: str = field(metadata={"help": "one line for listings"})
    instruction: str = field(metadata={"help": "the system message"})
    kind: str = field(metadata={"help": "choice | text | json: how the reply is read"})
    metric: str = field(metadata={"help": "the evaluation's main score (tasks/scoring.py)"})
    also: tuple[str, ...] = field(default=(), metadata={"help": "further metrics reported"})
    input_label: str = "Text"
    question: str = field(default="", metadata={
        "help": "a line after the input, formatted with {choices} and {target}"})
    choices: tuple[str, ...] = field(default=(), metadata={"help": "fixed labels (else per input)"})
    fields: tuple[str, ...] = field(default=(), metadata={"help": "JSON keys, for kind json"})
    shots: tuple[Shot, ...] = ()
    needs_context: bool = field(default=False, metadata={"help": "the input needs a passage (QA)"})
    first_line: bool = field(default=False, metadata={"help": "keep only the reply's first line"})
    max_new_tokens: int = 32
    cot_max_new_tokens: int = 96
    train_file: str = field(default="", metadata={
        "help": "text,label data (tasks/data) for a linear probe, for classification tasks"})

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} must be one of {', '.join(KINDS)}")
        if self.kind == "json" and not self.fields:
            raise ValueError(f"template {self.name!r} reads JSON but names no fields")
        if not self.shots:
            raise ValueError(f"template {self.name!r} needs at least one few-shot example")

    @property
    def classification(self) -> bool:
        return self.kind == "choice" and bool(self.choices)

    def tokens_for(self, mode: str) -> int:
        return self.cot_max_new_tokens if mode == "cot" else self.max_new_tokens

    def check(self, item: TaskInput, mode: str) -> TaskInput:
        """`item` with the template's fixed choices filled in; TaskInputError for what cannot run."""
        if mode not in MODES:
            raise TaskInputError(f"mode {mode!r} must be one of {', '.join(MODES)}")
        if not item.text.strip():
            raise TaskInputError("the input text is empty")
        if self.needs_context and not item.context.strip():
            raise TaskInputError(f"task {self.name!r} needs a passage (`context`) or a collection")
        choices = item.choices or self.choices
        if self.kind == "choice" and len(choices) < 2:
            raise TaskInputError(f"task {self.name!r} needs at least two `choices`")
        if "{target}" in self.question and not item.target.strip():
            raise TaskInputError(f"task {self.name!r} needs a `target` (the word to resolve)")
        return TaskInput(item.text, item.context, tuple(choices), item.target)

    def render(self, item: TaskInput) -> str:
        parts = [f"Passage:\n{item.context.strip()}\n"] if item.context else []
        parts.append(f"{self.input_label}: {item.text.strip()}")
        if self.question:
            parts.append(self.question.format(choices=" or ".join(item.choices), target=item.target))
        return "\n".join(parts)

    def messages(self, item: TaskInput, mode: str) -> Messages:
        item = self.check(item, mode)
        system = self.instruction + (COT if mode == "cot" else "")
        out: Messages = [{"role": "system", "content": system}]
        for shot in self.shots if mode == "few_shot" else ():
            out += [{"role": "user", "content": self.render(self.check(shot.input, "zero_shot"))},
                    {"role": "assistant", "content": shot.output}]
        out.append({"role": "user", "content": self.render(item)})
        return out

    def parse(self, reply: str, mode: str, item: TaskInput) -> Any:
        """The task's output from the model's reply: one of the choices (None if it names none), a
        dict of the fields (None if no JSON object is found), or the text."""
        text = final_answer(reply, mode)
        if self.first_line:
            text = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if self.kind == "choice":
            return pick_choice(text, item.choices or self.choices)
        if self.kind == "json":
            return read_fields(text, self.fields)
        return text


def _choice_pattern(choice: str) -> re.Pattern[str]:
    """The choice, or its last word ("the suitcase" also matches "suitcase"), as whole words."""
    words = choice.lower().split()
    alts = {re.escape(choice.lower()), re.escape(words[-1])} if words else {re.escape(choice.lower())}
    return re.compile(r"\b(?:" + "|".join(sorted(alts, key=len, reverse=True)) + r")\b")


def pick_choice(text: str, choices: tuple[str, ...]) -> str | None:
    """The choice named first in `text` (by position), or None when it names none."""
    lowered = text.lower()
    found = [(m.start(), c) for c in choices if (m := _choice_pattern(c).search(lowered))]
    return min(found)[1] if found else None


def read_fields(text: str, fields: tuple[str, ...]) -> dict[str, Any] | None:
    """The first JSON object in `text`, restricted to `fields` (keys compared case-insensitively)."""
    start = text.find("{")
    while start >= 0:
        end = text.find("}", start)
        while end >= 0:
            try:
                obj = json.loads(text[start:end + 1])
            except json.JSONDecodeError:
                end = text.find("}", end + 1)
                continue
            if isinstance(obj, dict):
                lowered = {str(k).lower(): v for k, v in obj.items()}
                return {f: lowered[f] for f in fields if f in lowered}
            break
        start = text.find("{", start + 1)
    return None
