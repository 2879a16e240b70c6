"""The gate after training: does the tuned model do what the job asked, better than the base does?

Behaviour checks (a regex every answer must match, a maximum length, a required phrase) are run on
the answers of the base and of the tuned model to the held-out prompts (the same validation split
the trainer held out); adherence is the share of answers passing every check. When the job names an
eval collection, both models also answer its golden questions through the real RAG path, and answer
accuracy is compared. `better` is: adherence rose (or no checks were declared) and accuracy did not
fall.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from generation.generator import Generator, Messages, SamplingConfig, generate

from .jobs import GateSpec

SAMPLES_KEPT = 5


@dataclass(frozen=True)
class BehaviourChecks:
    regex: str | None = None
    max_chars: int | None = None
    required_phrase: str | None = None

    @classmethod
    def of(cls, gate: GateSpec) -> BehaviourChecks:
        return cls(gate.regex, gate.max_chars, gate.required_phrase)

    def failures(self, text: str) -> list[str]:
        """The checks `text` fails, by name."""
        out = []
        if self.regex is not None and not re.search(self.regex, text):
            out.append("regex")
        if self.max_chars is not None and len(text) > self.max_chars:
            out.append("max_chars")
        if self.required_phrase is not None and self.required_phrase.lower() not in text.lower():
            out.append("required_phrase")
        return out


def adherence(answers: Sequence[str], checks: BehaviourChecks) -> dict[str, Any]:
    """Share of answers passing every check, and how often each check failed."""
    failed = [checks.failures(a) for a in answers]
    by_check: dict[str, int] = {}
    for names in failed:
        for name in names:
            by_check[name] = by_check.get(name, 0) + 1
    n = len(answers)
    return {"adherence": round(sum(not f for f in failed) / n, 4) if n else None,
            "failures": by_check, "mean_chars": round(sum(map(len, answers)) / n, 1) if n else None}


def prompts_of(samples: Sequence[Any], limit: int) -> list[Messages]:
    """The conversation before the last assistant turn of each chat sample (text samples skipped)."""
    out = []
    for sample in samples:
        msgs = list(sample.messages)
        while msgs and msgs[-1]["role"] == "assistant":
            msgs.pop()
        if msgs and msgs[-1]["role"] == "user":
            out.append(msgs)
        if len(out) >= limit:
            break
    return out


class Pinned:
    """A generator that always answers with one adapter (or "base"): what the gate compares."""

    def __init__(self, gen: Generator, adapter: str) -> None:
        self.gen = gen
        self.adapter = adapter
        self.name = f"{gen.name} ({adapter})"
        self.context_length = gen.context_length

    def count_tokens(self, text: str) -> int:
        return self.gen.count_tokens(text)

    def prompt_tokens(self, messages: Messages) -> int:
        return self.gen.prompt_tokens(messages)

    def stream(self, messages: Messages, sampling: SamplingConfig,
               adapter: str | None = None) -> Iterator[str]:
        return self.gen.stream(messages, sampling, adapter=self.adapter)


AskFn = Callable[[Generator], dict[str, Any]]


def run_gate(tuned: Generator, base: Generator, prompts: Sequence[Messages], gate: GateSpec,
             eval_accuracy: AskFn | None = None,
             on_phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Answer the held-out prompts with both models, score them, and (optionally) evaluate both on
    the eval collection; returns the report stored with the job and the adapter."""
    start = time.perf_counter()
    checks = BehaviourChecks.of(gate)
    sampling = SamplingConfig(max_new_tokens=gate.max_new_tokens, loop_ngram=8)
    report: dict[str, Any] = {"prompts": len(prompts), "checks": {
        "regex": gate.regex, "max_chars": gate.max_chars, "required_phrase": gate.required_phrase}}
    if checks_declared := gate.has_checks and bool(prompts):
        answers: dict[str, list[str]] = {}
        for label, gen in (("base", base), ("tuned", tuned)):
            if on_phase:
                on_phase(f"gate: {label} answers")
            answers[label] = [generate(gen, p, sampling).strip() for p in prompts]
            report[label] = adherence(answers[label], checks)
        report["samples"] = [{"prompt": p[-1]["content"][-300:], "base": b, "tuned": t}
                             for p, b, t in zip(prompts, answers["base"], answers["tuned"],
                                                strict=True)][:SAMPLES_KEPT]
    if eval_accuracy is not None:
        report["eval"] = {}
        for label, gen in (("base", base), ("tuned", tuned)):
            if on_phase:
                on_phase(f"gate: {label} eval")
            report["eval"][label] = eval_accuracy(gen)
    report.update(decide(report, checks_declared))
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def decide(report: dict[str, Any], checks_declared: bool) -> dict[str, Any]:
    """better: adherence rose (when checks were run) and answer accuracy did not fall (when run)."""
    reasons, better = [], True
    if checks_declared:
        base, tuned = report["base"]["adherence"], report["tuned"]["adherence"]
        rose = tuned > base
        better &= rose
        reasons.append(f"adherence {base:.2f} -> {tuned:.2f} ({'rose' if rose else 'did not rise'})")
    if "eval" in report:
        base_acc = report["eval"]["base"]["answer_accuracy"]
        tuned_acc = report["eval"]["tuned"]["answer_accuracy"]
        kept = tuned_acc >= base_acc
        better &= kept
        reasons.append(f"answer accuracy {base_acc:.3f} -> {tuned_acc:.3f} "
                       f"({'did not fall' if kept else 'fell'})")
    if not reasons:
        return {"better": None, "reason": "the job declared no checks and no eval collection"}
    return {"better": better, "reason": "; ".join(reasons)}
