"""How tokens are picked (SamplingConfig) and what a generation reports when it ends
(GenerationStats): shared by the Generator protocol, the batching engine and the serial path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .errors import InvalidRequest
from .spans import SpanConstraint


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick tokens: greedy when temperature is 0."""

    max_new_tokens: int = field(default=256, metadata={"help": "answer length cap, 1..4096"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy, up to 2"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass, (0, 1]"})
    stop: tuple[str, ...] = field(default=(), metadata={"help": "cut the answer before these"})
    repetition_penalty: float = field(default=1.0, metadata={
        "help": "1 = off; >1 penalises every token already in the sequence, prompt included, "
                "which also discourages copying from the context"})
    loop_ngram: int = field(default=0, metadata={
        "help": "0 = off; stop once the generated text repeats an n-gram of this many tokens it "
                "already produced (small models loop under greedy decoding)"})
    constraint: SpanConstraint | None = field(default=None, compare=False, metadata={
        "help": "span-grounded decoding: the answer may only copy text from these passages (plus "
                "[n] markers, glue words and the refusal); None = unconstrained"})

    def __post_init__(self) -> None:
        if self.loop_ngram != 0 and not 2 <= self.loop_ngram <= 64:
            raise ValueError(f"loop_ngram {self.loop_ngram!r} must be 0 (off) or in 2..64")
        if not 1.0 <= self.repetition_penalty <= 2.0:
            raise ValueError(f"repetition_penalty {self.repetition_penalty!r} must be in 1..2")
        if not 1 <= self.max_new_tokens <= 4096:
            raise InvalidRequest(f"max_new_tokens {self.max_new_tokens!r} must be in 1..4096")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidRequest(f"temperature {self.temperature!r} must be in 0..2 (0 = greedy)")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidRequest(f"top_p {self.top_p!r} must be in (0, 1]")
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"stop {self.stop!r} must be a tuple of non-empty strings")


@dataclass(frozen=True)
class GenerationStats:
    """Timings of one generate call (the wait for the model lock is `queued_s`, not in TTFT)."""

    prompt_tokens: int
    new_tokens: int
    time_to_first_token_s: float
    prefill_tok_s: float
    decode_tok_s: float
    queued_s: float
    total_s: float


StatsListener = Callable[[GenerationStats], None]


@runtime_checkable
class StatsSource(Protocol):
    """A generator that reports the timings of each generation, once it ends, to the listeners
    given to `observe` (metrics, logs); it knows nothing of what they do with them."""

    def observe(self, listener: StatsListener) -> None: ...


def repeats_ngram(tokens: Sequence[int], n: int) -> bool:
    """True when the last `n` tokens already occurred earlier in `tokens`."""
    if n <= 0 or len(tokens) < 2 * n:
        return False
    tail = list(tokens[-n:])
    return any(list(tokens[i:i + n]) == tail for i in range(len(tokens) - 2 * n + 1))
