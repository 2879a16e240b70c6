"""A deterministic stand-in Generator for API and unit tests: a scripted answer, word by word."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator

from generation.adapters import is_base
from generation.errors import AdapterNotLoaded, PromptTooLong
from generation.generator import Messages, SamplingConfig
from generation.prompting import check_messages, cut_at_stops, fallback_prompt

PIECE = re.compile(r"\s*\S+")


class ScriptedGenerator:
    """Streams `answer_fn(messages)` one word at a time; a "token" is a word or a punctuation mark.

    `calls` keeps every message list it was asked about, so tests can check the prompts they built.
    It hosts no adapters: any adapter other than the base is refused, as the protocol says.
    """

    name = "scripted"

    def __init__(self, answer_fn: Callable[[Messages], str], context_length: int = 2048) -> None:
        self.answer_fn = answer_fn
        self.context_length = context_length
        self.calls: list[Messages] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + sum(ch in string.punctuation for ch in text)

    def prompt_tokens(self, messages: Messages) -> int:
        check_messages(messages)
        return self.count_tokens(fallback_prompt(messages))

    def stream(self, messages: Messages, sampling: SamplingConfig,
               adapter: str | None = None) -> Iterator[str]:
        if not is_base(adapter):
            raise AdapterNotLoaded(f"adapter {adapter!r} is not loaded: {self.name} hosts none")
        used = self.prompt_tokens(messages)
        if used >= self.context_length:
            raise PromptTooLong(used, self.context_length)
        self.calls.append([dict(m) for m in messages])
        words = PIECE.findall(self.answer_fn(messages))[: sampling.max_new_tokens]
        return cut_at_stops(iter(words), sampling.stop)
