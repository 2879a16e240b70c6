"""Domain errors of the generation layer; translated to HTTP/CLI errors in api/."""

from __future__ import annotations


class GenerationError(Exception):
    """Base class for generation failures (loading, quantisation, the generate call itself)."""


class ModelNotFound(GenerationError):
    """A model name, directory or hub id that is not available locally."""


class ModelImportError(GenerationError):
    """A GGUF (or other source) file that could not be turned into a model directory."""


class PromptTooLong(GenerationError):
    """The chat-templated prompt leaves no room for an answer inside the model's context."""

    def __init__(self, prompt_tokens: int, context_length: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length
        super().__init__(
            f"the prompt has {prompt_tokens} tokens but the model's context is {context_length}; "
            "send fewer or shorter messages (or retrieve fewer chunks)"
        )


class AdapterNotLoaded(GenerationError):
    """An adapter asked of a generator that has not loaded it (or cannot load adapters at all)."""
