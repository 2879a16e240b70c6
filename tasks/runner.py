"""Running a template: one input through a Generator (`run_task`), a whole evaluation set in one mode
(`evaluate`), and, for classification templates, a linear probe on the embedder trained on the
template's labelled split and scored on the same evaluation set (`evaluate_probe`).

Evaluation decodes greedily; a generator that can answer several conversations in one call
(`generate_batch`, as HFGenerator does) is given the set in batches, which is several times faster
on a CPU and gives the same greedy answers up to padding numerics.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from generation.generator import Generator, SamplingConfig, generate
from generation.prompting import Messages
from retrieval.embedder import Embedder

from .library import eval_items, item_input, train_split
from .scoring import METRICS
from .templates import TaskInput, TaskTemplate

if TYPE_CHECKING:
    from tuning.probe import Probe

LOOP_NGRAM = 8  # stop a reply that starts repeating itself (small models loop under greedy decoding)


@runtime_checkable
class BatchGenerator(Protocol):
    def generate_batch(self, conversations: Sequence[Messages], sampling: SamplingConfig,
                       adapter: str | None = None) -> list[str]: ...


@dataclass(frozen=True)
class TaskRun:
    task: str
    mode: str
    output: Any = field(metadata={"help": "the parsed output: a choice, text or a dict of fields"})
    reply: str = field(metadata={"help": "the model's whole reply"})
    seconds: float


@dataclass(frozen=True)
class TaskScore:
    task: str
    mode: str
    metric: str
    score: float
    n: int
    also: dict[str, float]
    seconds: float
    model: str
    items: list[dict[str, Any]] = field(default_factory=list, repr=False)


def sampling_for(template: TaskTemplate, mode: str, max_new_tokens: int | None = None) -> SamplingConfig:
    return SamplingConfig(max_new_tokens=max_new_tokens or template.tokens_for(mode), temperature=0.0,
                          loop_ngram=LOOP_NGRAM)


def run_task(template: TaskTemplate, generator: Generator, item: TaskInput, mode: str = "zero_shot",
             adapter: str | None = None, max_new_tokens: int | None = None) -> TaskRun:
    """One input through the template in `mode` (checked before the model is asked)."""
    item = template.check(item, mode)
    messages = template.messages(item, mode)
    started = time.perf_counter()
    reply = generate(generator, messages, sampling_for(template, mode, max_new_tokens), adapter)
    return TaskRun(task=template.name, mode=mode, output=template.parse(reply, mode, item),
                   reply=reply, seconds=round(time.perf_counter() - started, 3))


def _replies(generator: Generator, chats: list[Messages], sampling: SamplingConfig,
             adapter: str | None, batch_size: int) -> list[str]:
    if isinstance(generator, BatchGenerator) and batch_size > 1:
        out: list[str] = []
        for i in range(0, len(chats), batch_size):
            out += generator.generate_batch(chats[i:i + batch_size], sampling, adapter)
        return out
    return [generate(generator, chat, sampling, adapter) for chat in chats]


def evaluate(template: TaskTemplate, generator: Generator, mode: str = "zero_shot",
             items: list[dict[str, Any]] | None = None, adapter: str | None = None,
             batch_size: int = 8, limit: int | None = None) -> TaskScore:
    """The template's score on its evaluation set (or `items`) in `mode`, with every item's output."""
    items = (eval_items(template) if items is None else items)[:limit]
    if not items:
        raise ValueError("nothing to evaluate: the evaluation set is empty")
    inputs = [template.check(item_input(it), mode) for it in items]
    started = time.perf_counter()
    replies = _replies(generator, [template.messages(x, mode) for x in inputs],
                       sampling_for(template, mode), adapter, batch_size)
    outputs = [template.parse(r, mode, x) for r, x in zip(replies, inputs, strict=True)]
    return _score(template, mode, items, outputs, replies, time.perf_counter() - started,
                  getattr(generator, "name", "generator"))


def _score(template: TaskTemplate, mode: str, items: list[dict[str, Any]], outputs: list[Any],
           replies: list[str], seconds: float, model: str) -> TaskScore:
    metrics = (template.metric, *template.also)
    per_item = [{"input": it["input"], "expected": it["answer"], "output": out, "reply": reply,
                 **{m: round(METRICS[m](out, it), 4) for m in metrics}}
                for it, out, reply in zip(items, outputs, replies, strict=True)]
    mean = {m: round(sum(p[m] for p in per_item) / len(per_item), 4) for m in metrics}
    return TaskScore(task=template.name, mode=mode, metric=template.metric, score=mean[template.metric],
                     n=len(items), also={m: mean[m] for m in template.also}, seconds=round(seconds, 2),
                     model=model, items=per_item)


def train_template_probe(template: TaskTemplate, embedder: Embedder,
                         seed: int = 42) -> tuple[Probe, dict[str, Any]]:
    """A linear probe (tuning/probe.py) on every example of the template's labelled split, which
    shares no text with its evaluation set."""
    from tuning.probe import train_probe

    texts, labels = train_split(template)
    seen = set(texts)
    if any(it["input"] in seen for it in eval_items(template)):
        raise ValueError(f"task {template.name!r}: the probe's training split overlaps the evaluation set")
    return train_probe(texts, labels, embedder, val_fraction=0.0, seed=seed)


def evaluate_probe(template: TaskTemplate, embedder: Embedder, seed: int = 42) -> TaskScore:
    """The template's linear probe, trained on its labelled split, scored on its evaluation set."""
    items = eval_items(template)
    started = time.perf_counter()
    probe, _ = train_template_probe(template, embedder, seed)
    predicted = [p["label"] for p in probe.predict([it["input"] for it in items], embedder)]
    return _score(template, "linear_probe", items, predicted, predicted, time.perf_counter() - started,
                  f"linear probe on {embedder.name}")
