"""The gate after training: does the tuned model do what the job asked, better than what serves now?

Behaviour checks (a regex every answer must match, a maximum length, a required phrase) are run on
the answers of the baseline (the adapter being served, else the base model) and of the tuned model
to the held-out prompts (the validation split the trainer held out, in a seeded random order);
adherence is the share of answers passing every check. The gate costs less than training: prompts
are answered 8 at a time in one batched generate call, and it stops as soon as the comparison is
settled (the prompts left could not change it, or a sign test on the prompts where the two differ
is below 0.001; never on fewer than 16 prompts). When the job names an eval collection, both
models also answer its golden questions through the real RAG path (skipped once adherence is
known not to rise), and answer accuracy is compared. `better` is: adherence rose (or no checks were
declared) and accuracy did not fall.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from generation.generator import Generator, Messages, SamplingConfig, generate

from .jobs import GateSpec

SAMPLES_KEPT = 5
GATE_BATCH = 8  # prompts answered in one generate call
MIN_PROMPTS = 16  # the gate never decides on fewer held-out prompts (when it has them)
MIN_DIFFERING_PROMPTS = 24  # ... nor calls "no change" before this many prompts answered alike
SIGN_P = 1e-3


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


def prompts_of(samples: Sequence[Any], limit: int, seed: int = 0) -> list[Messages]:
    """Up to `limit` held-out prompts, in a seeded random order (so a gate that stops early has
    seen a fair sample): the conversation before the last assistant turn of each chat sample, each
    distinct last user turn once (text samples skipped)."""
    out, seen = [], set()
    order = list(samples)
    random.Random(seed).shuffle(order)
    for sample in order:
        msgs = list(sample.messages)
        while msgs and msgs[-1]["role"] == "assistant":
            msgs.pop()
        if msgs and msgs[-1]["role"] == "user" and msgs[-1]["content"] not in seen:
            seen.add(msgs[-1]["content"])
            out.append(msgs)
        if len(out) >= limit:
            break
    return out


def settled(base: Sequence[bool], tuned: Sequence[bool], remaining: int) -> str | None:
    """Whether the adherence comparison is already decided, and which way ("rose" / "did not
    rise"): exactly, when the prompts left cannot change it; or by a sign test on the prompts where
    the two models differ (p < 0.001), or when none differed among MIN_DIFFERING_PROMPTS."""
    lead = sum(tuned) - sum(base)
    if lead > remaining:
        return "rose"
    if -lead >= remaining:
        return "did not rise"
    wins = sum(t and not b for b, t in zip(base, tuned, strict=True))
    losses = sum(b and not t for b, t in zip(base, tuned, strict=True))
    if len(base) < MIN_PROMPTS:
        return None
    if wins + losses == 0:
        return "did not rise" if len(base) >= MIN_DIFFERING_PROMPTS else None
    tail = 0.5 ** (wins + losses)
    if losses == 0 and tail < SIGN_P:
        return "rose"
    if wins <= losses and (wins + losses) >= 10:
        return "did not rise"
    return None


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

    def answer_batch(self, prompts: Sequence[Messages], sampling: SamplingConfig) -> list[str]:
        """Answers to `prompts`: in one batched call where the generator has one."""
        batch = getattr(self.gen, "generate_batch", None)
        if batch is not None:
            return [a.strip() for a in batch(prompts, sampling, adapter=self.adapter)]
        return [generate(self, p, sampling).strip() for p in prompts]


AskFn = Callable[[Generator], dict[str, Any]]


def run_gate(tuned: Pinned, base: Pinned, prompts: Sequence[Messages], gate: GateSpec,
             eval_accuracy: AskFn | None = None,
             on_phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Answer the held-out prompts with both models, a batch at a time, until the adherence
    comparison is settled; score them; and (optionally, and only while the verdict can still be
    `better`) evaluate both on the eval collection. The report is stored with the job and the
    adapter; `seconds` is the gate's whole cost, split into `behaviour_seconds` and `eval_seconds`."""
    start = time.perf_counter()
    checks = BehaviourChecks.of(gate)
    report: dict[str, Any] = {"prompts": len(prompts), "baseline": base.adapter, "checks": {
        "regex": gate.regex, "max_chars": gate.max_chars, "required_phrase": gate.required_phrase}}
    if checks_declared := gate.has_checks and bool(prompts):
        report.update(_behaviour(tuned, base, prompts, gate, checks, on_phase))
    report["behaviour_seconds"] = round(time.perf_counter() - start, 1)
    if eval_accuracy is not None and not (checks_declared and report.get("settled") == "did not rise"):
        eval_start = time.perf_counter()
        report["eval"] = {}
        for label, gen in (("base", base), ("tuned", tuned)):
            if on_phase:
                on_phase(f"gate: {label} eval")
            report["eval"][label] = eval_accuracy(gen)
        report["eval_seconds"] = round(time.perf_counter() - eval_start, 1)
    report.update(decide(report, checks_declared))
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def _behaviour(tuned: Pinned, base: Pinned, prompts: Sequence[Messages], gate: GateSpec,
               checks: BehaviourChecks, on_phase: Callable[[str], None] | None) -> dict[str, Any]:
    sampling = SamplingConfig(max_new_tokens=gate.max_new_tokens, loop_ngram=8)
    answers: dict[str, list[str]] = {"base": [], "tuned": []}
    passed: dict[str, list[bool]] = {"base": [], "tuned": []}
    verdict = None
    for at in range(0, len(prompts), GATE_BATCH):
        batch = prompts[at: at + GATE_BATCH]
        for label, gen in (("base", base), ("tuned", tuned)):
            if on_phase:
                on_phase(f"gate: {label} answers {at + len(batch)}/{len(prompts)}")
            got = gen.answer_batch(batch, sampling)
            answers[label] += got
            passed[label] += [not checks.failures(a) for a in got]
        verdict = settled(passed["base"], passed["tuned"], len(prompts) - len(answers["base"]))
        if verdict is not None:
            break
    n = len(answers["base"])
    return {"prompts_answered": n, "settled": verdict or "all prompts answered",
            "base": adherence(answers["base"], checks), "tuned": adherence(answers["tuned"], checks),
            "samples": [{"prompt": p[-1]["content"][-300:], "base": b, "tuned": t}
                        for p, b, t in zip(prompts, answers["base"], answers["tuned"],
                                           strict=False)][:SAMPLES_KEPT]}


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
