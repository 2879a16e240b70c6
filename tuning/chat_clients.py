"""Chat models that write synthetic training data: a small `ChatClient` protocol with two backends.

`OpenAICompatClient` posts to any OpenAI-compatible `/chat/completions` endpoint (OpenAI, vLLM,
llama.cpp's server, Ollama, or ragtune itself) with a bounded number of retries; every HTTP or
network failure becomes a TuningError that says what to check. `GeneratorClient` adapts the local
`generation.Generator`, so data can be written offline by the served model.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

import httpx

from generation.generator import Generator, Messages, SamplingConfig, generate

from .errors import TuningError

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@runtime_checkable
class ChatClient(Protocol):
    """Chat messages in, the assistant's whole reply out."""

    def complete(self, messages: Messages, temperature: float, max_tokens: int) -> str: ...


class OpenAICompatClient:
    """POST `{base_url}/chat/completions`; `base_url` is the API root, e.g. https://api.openai.com/v1."""

    def __init__(self, base_url: str, api_key: str = "", model: str = "gpt-4o-mini",
                 timeout_s: float = 120.0, max_retries: int = 2, backoff_s: float = 1.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise TuningError(f"endpoint {base_url!r} must be an http:// or https:// URL "
                              "(the API root, e.g. https://api.openai.com/v1)")
        if not model:
            raise TuningError("an OpenAI-compatible endpoint needs a model name (--model)")
        if max_retries < 0:
            raise ValueError(f"max_retries {max_retries!r} must be >= 0")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    def complete(self, messages: Messages, temperature: float, max_tokens: int) -> str:
        body = {"model": self.model, "messages": messages, "temperature": temperature,
                "max_tokens": max_tokens}
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._http.post(self.url, json=body)
            except httpx.HTTPError as exc:
                if last:
                    raise TuningError(f"cannot reach {self.url}: {exc.__class__.__name__}: {exc}; "
                                      "check the endpoint URL and that the server is up") from exc
            else:
                if response.status_code < 400:
                    return _content(response, self.url)
                if last or response.status_code not in RETRY_STATUS:
                    raise TuningError(f"{self.url} answered HTTP {response.status_code}: "
                                      f"{response.text[:300]}" + _hint(response.status_code))
            time.sleep(self.backoff_s * 2 ** attempt)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def close(self) -> None:
        self._http.close()


def _hint(status: int) -> str:
    if status in (401, 403):
        return " (check the API key: --api-key or RAGTUNE_OPENAI_API_KEY)"
    if status == 404:
        return " (check the endpoint: it should be the API root ending in /v1, and the model name)"
    return ""


def _content(response: httpx.Response, url: str) -> str:
    try:
        data: Any = response.json()
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise TuningError(f"{url} did not answer like an OpenAI chat completion "
                          f"(choices[0].message.content): {response.text[:300]}") from exc
    return content if isinstance(content, str) else ""


class GeneratorClient:
    """The local generator behind the ChatClient protocol."""

    def __init__(self, generator: Generator, loop_ngram: int = 8) -> None:
        self.generator = generator
        self.loop_ngram = loop_ngram

    def complete(self, messages: Messages, temperature: float, max_tokens: int) -> str:
        sampling = SamplingConfig(max_new_tokens=max_tokens, temperature=min(temperature, 2.0),
                                  loop_ngram=self.loop_ngram)
        return generate(self.generator, messages, sampling)
