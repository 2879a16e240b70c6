"""The gate: batched answers, an early stop once the comparison is settled, a fair held-out sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from generation.generator import Messages, SamplingConfig
from tuning.datasets import Sample
from tuning.gate import MIN_PROMPTS, Pinned, prompts_of, run_gate, settled
from tuning.jobs import GateSpec


class Batched:
    """A generator that answers in batches: the tuned adapter ends with the marker when `learned`."""

    name, context_length = "fake", 2048

    def __init__(self, learned: bool) -> None:
        self.learned = learned
        self.calls: list[tuple[str | None, int]] = []

    def generate_batch(self, prompts: Sequence[Messages], sampling: SamplingConfig,
                       adapter: str | None = None) -> list[str]:
        self.calls.append((adapter, len(prompts)))
        mark = " END" if adapter == "tuned" and self.learned else ""
        return [f"answer to {p[-1]['content']}{mark}" for p in prompts]


def _prompts(n: int) -> list[Messages]:
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


def test_a_clear_win_stops_after_the_minimum_prompts_in_batches() -> None:
    gen = Batched(learned=True)
    report = run_gate(Pinned(gen, "tuned"), Pinned(gen, "served"), _prompts(50),  # type: ignore[arg-type]
                      GateSpec(regex="END$"))
    assert report["prompts_answered"] == MIN_PROMPTS and report["settled"] == "rose"
    assert (report["base"]["adherence"], report["tuned"]["adherence"]) == (0.0, 1.0)
    assert report["better"] is True and report["baseline"] == "served"
    assert gen.calls == [("served", 8), ("tuned", 8)] * 2
    assert report["seconds"] >= report["behaviour_seconds"]


def test_no_change_stops_and_skips_the_eval() -> None:
    gen = Batched(learned=False)
    asked: list[Any] = []
    report = run_gate(Pinned(gen, "tuned"), Pinned(gen, "base"), _prompts(50),  # type: ignore[arg-type]
                      GateSpec(regex="END$"), eval_accuracy=asked.append)
    assert report["prompts_answered"] == 24 and report["settled"] == "did not rise"
    assert report["better"] is False and "eval" not in report and asked == []


def test_settled_exactly_or_by_the_sign_test() -> None:
    assert settled([False] * 4, [True] * 4, remaining=3) == "rose"  # 4 ahead, 3 left
    assert settled([True] * 4, [False] * 4, remaining=4) == "did not rise"
    assert settled([False] * 8, [True] * 8, remaining=40) is None  # too few prompts yet
    assert settled([False] * 16, [True] * 16, remaining=40) == "rose"  # p = 2^-16
    mixed_base = [False] * 12 + [True] * 4
    assert settled(mixed_base, [True] * 12 + [False] * 4, remaining=40) is None  # 12 wins, 4 losses


def test_held_out_prompts_are_a_seeded_sample_without_repeats() -> None:
    samples = [Sample(messages=[{"role": "user", "content": f"q{i % 30}"},
                                {"role": "assistant", "content": "a"}], line=i) for i in range(60)]
    first = prompts_of(samples, 20, seed=1)
    assert len(first) == 20 and len({p[-1]["content"] for p in first}) == 20
    assert first == prompts_of(samples, 20, seed=1) and first != prompts_of(samples, 20, seed=2)
    assert [p[-1]["content"] for p in first] != [f"q{i}" for i in range(20)]
