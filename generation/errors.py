"""Domain errors of the generation layer; translated to HTTP/CLI errors in api/."""

from __future__ import annotations


class GenerationError(Exception):
    """Base class for generation failures (loading, quantisation, the generate call itself)."""


class InvalidRequest(GenerationError, ValueError):
    """Messages, sampling or answer options a person chose that cannot work (a 422, not a bug).

    Also a ValueError, so callers that catch ValueError for bad arguments keep working."""


class ModelNotFound(GenerationError):
    """A model name, directory or hub id that is not available locally."""


class ModelImportError(GenerationError):
    """A GGUF (or other source) file that could not be turned into a model directory."""


class ModelFileError(GenerationError, ValueError):
    """A model file the settings point to (the answerability classifier) that cannot be read or
    does not hold together: the operator's to fix or refit. Not the client's mistake, so a request
    it stops is answered as the generator being unavailable, not as a 422."""


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


class AdapterError(GenerationError):
    """An adapter that cannot be registered, served, merged or chosen as asked."""


class AdapterNotFound(AdapterError):
    """An adapter name that is not in the registry."""


class AdapterMismatch(AdapterError):
    """An adapter trained on another base model or tokenizer than the one it is put on."""


class AdapterInUse(AdapterMismatch):
    """An adapter that cannot be deleted because it is the one being served (a conflict, as a
    mismatch is: both are answered 409)."""


class ServerBusy(GenerationError):
    """The generation queue is full (generation/batching.py); try again in `retry_after_s`."""

    def __init__(self, waiting: int, retry_after_s: int) -> None:
        super().__init__(f"the generator is busy: {waiting} requests are already waiting "
                         f"(RAGTUNE_GENERATION_QUEUE); retry in about {retry_after_s} s")
        self.waiting = waiting
        self.retry_after_s = retry_after_s
