"""The part of a Hugging Face tokenizer that ragtune calls, as a Protocol mypy can check calls against.

Generation renders prompts and counts tokens with it; tuning builds loss masks with it. A tokenizer
without a chat template simply lacks `chat_template`, so callers read that one with `getattr`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Tokenizer(Protocol):
    @property
    def eos_token(self) -> str | None: ...

    @property
    def eos_token_id(self) -> int | None: ...

    def __call__(self, text: str, *, add_special_tokens: bool = True) -> Mapping[str, Any]:
        """The encoding of `text`; its "input_ids" are the token ids."""
        ...

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, token_ids: list[int], *,
               skip_special_tokens: bool = False) -> str | list[str]: ...

    def apply_chat_template(self, conversation: list[dict[str, str]], *, tokenize: bool = True,
                            add_generation_prompt: bool = False) -> object:
        """The conversation rendered by the model's template: text when `tokenize` is False (the
        only way ragtune calls it), hence read with str()."""
        ...

    def get_vocab(self) -> dict[str, int]: ...
