"""Synthetic training data, written by a chat model, in the chat format `tuning.datasets` reads.

`generate_use_case` writes a system message for a use case, then prompts and responses to go with
it. `generate_from_collection` (in `tuning.synthetic_rag`) writes RAG-shaped examples from a
knowledge base. Both drop empty or garbled outputs and near-duplicates (character-shingle Jaccard
similarity), keep asking until they have `n` examples or run out of attempts, and report what they
dropped and why. `SyntheticSet.write_jsonl` writes `{"messages": [system, user, assistant]}` lines.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chat_clients import ChatClient, GeneratorClient, OpenAICompatClient
from .errors import InvalidConfig, TuningError

__all__ = [
    "ChatClient", "GeneratorClient", "NearDuplicates", "OpenAICompatClient", "SyntheticExample",
    "SyntheticSet", "clean_reply", "generate_use_case", "is_garbage", "jaccard", "shingles",
]

Messages = list[dict[str, str]]
Progress = Callable[[int, int], None]  # (kept, attempts)

_LABEL = re.compile(r"^\s*(?:system message|system prompt|request|prompt|user|question|response|"
                    r"answer|assistant)\s*:\s*", re.IGNORECASE)
_QUOTES = "\"'“”‘’`"
STYLES = (
    "a short, direct question", "a request with concrete details and numbers",
    "a question from a beginner", "a question from an expert", "a request to compare two options",
    "a request for step-by-step instructions", "a question about an edge case or a problem",
    "a request written casually, with a typo or two", "a request that asks for a short list",
    "a question that gives some background first",
)


@dataclass(frozen=True)
class SyntheticExample:
    """One chat example; `meta` says how it was made (for checks, not written to the file)."""

    messages: Messages
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SyntheticSet:
    """The examples kept, what was dropped (by reason) and how many model calls it took."""

    examples: list[SyntheticExample]
    dropped: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    system: str = ""
    stopped: str = ""
    """Why the run ended before its attempts were spent, if it did."""

    def summary(self) -> dict[str, Any]:
        return {"examples": len(self.examples), "attempts": self.attempts,
                "dropped": dict(sorted(self.dropped.items()))}

    def write_jsonl(self, path: str | Path) -> Path:
        """Write the examples as chat-format JSONL, atomically (temp file, fsync, rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for ex in self.examples:
                f.write(json.dumps({"messages": ex.messages}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        return path


# -- text checks ------------------------------------------------------------------------------

def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def shingles(text: str, k: int = 5) -> frozenset[str]:
    """Character k-grams of the lower-cased, punctuation-free text (the text itself if shorter)."""
    norm = _normalise(text)
    if len(norm) <= k:
        return frozenset([norm]) if norm else frozenset()
    return frozenset(norm[i:i + k] for i in range(len(norm) - k + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class NearDuplicates:
    """Remembers texts; `add` refuses one whose shingles overlap a kept one by >= `threshold`."""

    def __init__(self, threshold: float = 0.8, k: int = 5) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold {threshold!r} must be in (0, 1]")
        self.threshold = threshold
        self.k = k
        self._kept: list[frozenset[str]] = []

    def is_duplicate(self, text: str) -> bool:
        s = shingles(text, self.k)
        return any(jaccard(s, other) >= self.threshold for other in self._kept)

    def add(self, text: str) -> bool:
        """Keep `text` and return True, or return False if it near-duplicates a kept one."""
        if self.is_duplicate(text):
            return False
        self._kept.append(shingles(text, self.k))
        return True


def is_garbage(text: str, min_words: int = 1) -> bool:
    """Empty, without letters or digits, too short, or mostly one repeated word."""
    words = re.findall(r"\w+", text.lower())
    if len(words) < min_words:
        return True
    return len(words) >= 12 and len(set(words)) / len(words) < 0.25


def clean_reply(text: str) -> str:
    """The reply without a leading label ("Request: ...") and without wrapping quotes."""
    text = _LABEL.sub("", text.strip()).strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text


# -- use-case data ----------------------------------------------------------------------------

def _system_request(use_case: str) -> Messages:
    return [{"role": "system", "content": "You write system messages for AI assistants."},
            {"role": "user", "content": (
                f"Write the system message for an assistant built for this use case: {use_case}\n"
                "Say who the assistant is, what it helps with, its tone, and what it must not do. "
                "At most 120 words. Reply with the system message only.")}]


def _prompt_request(use_case: str, style: str, recent: list[str]) -> Messages:
    avoid = "".join(f"\n- {p}" for p in recent)
    avoid = f"\nIt must be clearly different from these earlier ones:{avoid}" if recent else ""
    return [{"role": "system", "content": "You write realistic messages that users send to assistants."},
            {"role": "user", "content": (
                f"Use case: {use_case}\nWrite one question a user of this assistant might ask: "
                f"{style}.{avoid}\nReply with the user's question only, ending with '?'.")}]


def make_system_message(client: ChatClient, use_case: str, temperature: float,
                        max_tokens: int = 256) -> str:
    system = clean_reply(client.complete(_system_request(use_case), temperature, max_tokens))
    if is_garbage(system, min_words=3):
        raise TuningError(f"the model wrote no usable system message for {use_case!r} "
                          f"(got {system[:80]!r}); try another model or a lower temperature")
    return system


def generate_use_case(client: ChatClient, use_case: str, n: int, temperature: float = 0.7,
                      seed: int = 42, system: str | None = None, max_attempts: int | None = None,
                      dedupe_threshold: float = 0.8, max_tokens: int = 512,
                      progress: Progress | None = None) -> SyntheticSet:
    """A system message for `use_case` (or the one given) and up to `n` prompt/response pairs.

    Prompts that are empty, garbled or near-duplicates of kept ones are dropped before a response
    is asked for; empty or garbled responses are dropped too. Stops after `max_attempts` prompts
    (default 3n + 10) even if fewer than `n` were kept.
    """
    if not use_case.strip():
        raise TuningError("the use case is empty: describe what the assistant is for")
    if n < 1:
        raise InvalidConfig(f"n {n!r} must be >= 1")
    max_attempts = max_attempts if max_attempts is not None else 3 * n + 10
    rng = random.Random(seed)
    system = system.strip() if system else make_system_message(client, use_case, temperature)
    out = SyntheticSet(examples=[], system=system)
    seen = NearDuplicates(dedupe_threshold)
    while len(out.examples) < n and out.attempts < max_attempts:
        out.attempts += 1
        recent = [ex.messages[1]["content"] for ex in out.examples[-8:]]
        request = _prompt_request(use_case, rng.choice(STYLES), recent)
        reply = clean_reply(client.complete(request, temperature, max_tokens))
        prompt = question_in(reply) or reply  # the user turn is the question, not what surrounds it
        if reason := _drop_prompt(prompt, seen):
            out.dropped[reason] += 1
        else:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
            response = client.complete(messages, temperature, max_tokens).strip()
            if is_garbage(response):
                out.dropped["empty_or_garbled_response"] += 1
            else:
                messages.append({"role": "assistant", "content": response})
                out.examples.append(SyntheticExample(messages, {"kind": "use_case"}))
        if progress:
            progress(len(out.examples), out.attempts)
    return out


def question_in(text: str) -> str | None:
    """The first question in a reply ("Sure! How do I ...? I hope" -> "How do I ...?"), or None."""
    if "?" not in text:
        return None
    head = text[: text.index("?") + 1]
    start = max(head.rfind(c) for c in ".!:\n")
    question = clean_reply(head[start + 1:])
    return question if not is_garbage(question, min_words=2) else None


def _drop_prompt(prompt: str, seen: NearDuplicates) -> str | None:
    if is_garbage(prompt, min_words=2):
        return "empty_or_garbled_prompt"
    if seen.is_duplicate(prompt):
        return "near_duplicate"
    if question_in(prompt) != prompt:
        return "not_a_question"
    seen.add(prompt)
    return None
