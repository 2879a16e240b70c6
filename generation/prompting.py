"""Chat messages into prompt text, and generated text cut at stop strings.

A prompt uses the tokenizer's chat template or, for tokenizers that have none, a plain
"System:/User:/Assistant:" layout (whose turn markers are then stop strings, FALLBACK_STOPS).
Pure functions: HFGenerator uses them, and any other Generator can.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from .errors import GenerationError, InvalidRequest
from .tokenizer import Tokenizer

Messages = list[dict[str, str]]
ROLES = ("system", "user", "assistant")
FALLBACK_STOPS = ("\nUser:", "\nSystem:")


def check_messages(messages: Messages) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list of {'role', 'content'} dicts")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            raise InvalidRequest(f"message {i} needs a role among {', '.join(ROLES)}: {msg!r}")
        if not isinstance(msg.get("content"), str):
            raise InvalidRequest(f"message {i} needs a string 'content'")


def fallback_prompt(messages: Messages) -> str:
    """A plain prompt for models whose tokenizer has no chat template."""
    turns = [f"{m['role'].capitalize()}: {m['content'].strip()}" for m in messages]
    return "\n\n".join(turns) + "\n\nAssistant:"


def render_prompt(tokenizer: Tokenizer, messages: Messages) -> str:
    """The prompt text for `messages`, ending where the assistant's answer starts."""
    if not getattr(tokenizer, "chat_template", None):
        return fallback_prompt(messages)
    try:
        return _apply_template(tokenizer, messages)
    except Exception as exc:  # jinja's TemplateError, e.g. templates that refuse a system role
        if messages[0]["role"] != "system" or len(messages) < 2:
            raise GenerationError(f"the model's chat template rejected the messages: {exc}") from exc
    merged = {"role": messages[1]["role"],
              "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"}
    return _apply_template(tokenizer, [merged, *messages[2:]])


def _apply_template(tokenizer: Tokenizer, messages: Messages) -> str:
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def _partial_stop(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that could be the start of a stop string."""
    longest = min(len(text), max(len(s) for s in stops) - 1)
    for k in range(longest, 0, -1):
        tail = text[-k:]
        if any(s.startswith(tail) for s in stops):
            return k
    return 0


def cut_at_stops(pieces: Iterable[str], stops: Sequence[str]) -> Iterator[str]:
    """Pass text through until the first stop string, which (and all after it) is dropped.

    Text that might be the start of a stop string is held back until it is known not to be.
    """
    if not stops:
        yield from (p for p in pieces if p)
        return
    buf = ""
    for piece in pieces:
        buf += piece
        hits = [i for i in (buf.find(s) for s in stops) if i >= 0]
        if hits:
            if min(hits) > 0:
                yield buf[: min(hits)]
            return
        keep = _partial_stop(buf, stops)
        if len(buf) > keep:
            yield buf[: len(buf) - keep]
            buf = buf[len(buf) - keep:]
    if buf:
        yield buf
