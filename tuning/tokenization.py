"""Tokenise chat messages for training, with labels that put the loss on the assistant's tokens only.

The mask comes from the tokenizer's own chat template: the conversation up to each assistant turn is
rendered with `add_generation_prompt=True`, and its tokens must be a prefix of the whole conversation's
tokens; everything from there to the end of that turn is the assistant's, its end-of-turn token (e.g.
`<|im_end|>`) included, so that a tuned model still learns to stop. A template for which the prefix
property does not hold raises TuningError rather than train on a wrong mask. Tokenizers without a
chat template get the plain "User:/Assistant:" layout that generation uses for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from generation.tokenizer import Tokenizer

from .datasets import Messages, Sample
from .errors import TuningError

IGNORE = -100
TRAIN_ON = ("assistant", "all")
# End-of-turn markers of common templates, besides the tokenizer's own eos_token.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>")


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids and labels (IGNORE where no loss is taken) of one training example."""

    input_ids: list[int]
    labels: list[int]
    line: int = 0

    @property
    def supervised(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


@dataclass
class TokenizeReport:
    """What tokenisation did to a dataset: kept, cut to max_length, dropped (no supervised tokens)."""

    kept: int = 0
    truncated: int = 0
    dropped: int = 0
    dropped_lines: list[int] = field(default_factory=list)


def end_of_turn_ids(tokenizer: Tokenizer) -> set[int]:
    """Ids that end an assistant turn: eos_token and the known end-of-turn markers in the vocab."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN if t in vocab)
    return ids


def _encode(tokenizer: Tokenizer, text: str) -> list[int]:
    # The template writes its own special tokens (BOS included, where it wants one).
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _render(tokenizer: Tokenizer, messages: Messages, generation_prompt: bool) -> list[int]:
    try:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as exc:  # jinja's TemplateError and friends
        raise TuningError(f"the chat template rejected a conversation: {exc}") from exc
    return _encode(tokenizer, str(text))


def _assistant_end(ids: list[int], start: int, stops: set[int]) -> int:
    """End of the assistant span in ids[start:]: just after its last end-of-turn token, if any."""
    for pos in range(len(ids) - 1, start - 1, -1):
        if ids[pos] in stops:
            return pos + 1
    return len(ids)


def _template_example(tokenizer: Tokenizer, messages: Messages) -> tuple[list[int], list[int]]:
    ids = _render(tokenizer, messages, generation_prompt=False)
    labels = [IGNORE] * len(ids)
    stops = end_of_turn_ids(tokenizer)
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        start = len(_prefix(tokenizer, messages[:i], ids, generation_prompt=True))
        turn = _prefix(tokenizer, messages[: i + 1], ids, generation_prompt=False)
        end = _assistant_end(turn, start, stops)
        labels[start:end] = ids[start:end]
    if messages[-1]["role"] == "assistant" and not stops.intersection(ids[-3:]):
        # A template that writes no end-of-turn token: add EOS, or the model never learns to stop.
        eos = tokenizer.eos_token_id
        if eos is None:
            raise TuningError("the chat template writes no end-of-turn token and the tokenizer has "
                              "no EOS token, so the model could not learn to stop; use a "
                              "tokenizer that has an eos_token")
        ids, labels = ids + [eos], labels + [eos]
    return ids, labels


def _prefix(tokenizer: Tokenizer, messages: Messages, full: list[int], generation_prompt: bool) -> list[int]:
    part = _render(tokenizer, messages, generation_prompt) if messages else []
    if full[: len(part)] != part:
        raise TuningError(
            "the chat template renders the start of a conversation differently from the whole "
            "conversation, so the assistant's tokens cannot be located for the loss mask; train "
            "with train_on='all', or use a tokenizer whose template renders turns independently")
    return part


def _fallback_example(tokenizer: Tokenizer, messages: Messages) -> tuple[list[int], list[int]]:
    """Segment by segment (so the mask is exact) in generation's "Role: text" fallback layout."""
    eos = tokenizer.eos_token or ""
    ids: list[int] = list(tokenizer("", add_special_tokens=True)["input_ids"])  # BOS, if any
    labels = [IGNORE] * len(ids)
    for i, msg in enumerate(messages):
        sep = "" if i == 0 else "\n\n"
        if msg["role"] == "assistant":
            pieces = [(f"{sep}Assistant:", False), (f" {msg['content'].strip()}{eos}", True)]
        else:
            pieces = [(f"{sep}{msg['role'].capitalize()}: {msg['content'].strip()}", False)]
        for text, supervised in pieces:
            part = _encode(tokenizer, text)
            ids += part
            labels += part if supervised else [IGNORE] * len(part)
    return ids, labels


def tokenize_example(tokenizer: Tokenizer, messages: Messages, max_length: int,
                     train_on: str = "assistant", line: int = 0) -> TokenizedExample:
    """input_ids and labels for `messages`, cut to `max_length` tokens.

    Labels are IGNORE on every token that is not the assistant's (system, user, template markup), and
    equal to input_ids on the assistant's content and its end-of-turn token; `train_on="all"` keeps
    every token.
    """
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on {train_on!r} must be one of {', '.join(TRAIN_ON)}")
    if max_length < 2:
        raise ValueError(f"max_length {max_length!r} must be >= 2")
    if getattr(tokenizer, "chat_template", None):
        ids, labels = _template_example(tokenizer, messages)
    else:
        ids, labels = _fallback_example(tokenizer, messages)
    if train_on == "all":
        labels = list(ids)
    return TokenizedExample(ids[:max_length], labels[:max_length], line)


def tokenize_text(tokenizer: Tokenizer, text: str, max_length: int, line: int = 0) -> TokenizedExample:
    """A plain text trained on whole, followed by EOS."""
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return TokenizedExample(ids[:max_length], ids[:max_length], line)


def tokenize_samples(tokenizer: Tokenizer, samples: Sequence[Sample], max_length: int,
                     train_on: str = "assistant") -> tuple[list[TokenizedExample], TokenizeReport]:
    """Tokenise every sample; those left with no supervised token after truncation are dropped."""
    report = TokenizeReport()
    out: list[TokenizedExample] = []
    for sample in samples:
        if sample.text is not None:
            full = tokenize_text(tokenizer, sample.text, max_length + 1, sample.line)
        else:
            full = tokenize_example(tokenizer, sample.messages, max_length + 1, train_on, sample.line)
        example = TokenizedExample(full.input_ids[:max_length], full.labels[:max_length], sample.line)
        report.truncated += len(full.input_ids) > max_length
        if example.supervised == 0:
            report.dropped += 1
            report.dropped_lines.append(sample.line)
            continue
        out.append(example)
    report.kept = len(out)
    return out, report
