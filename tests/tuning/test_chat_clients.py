"""Chat clients: an OpenAI-compatible endpoint on loopback (request shape, key, errors) and the
local generator behind the same protocol."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.generation.fakes import ScriptedGenerator
from tests.tuning.synth_fakes import serve_chat
from tuning.chat_clients import ChatClient, GeneratorClient, OpenAICompatClient
from tuning.errors import TuningError

ASK = [{"role": "user", "content": "Say hi"}]


def test_posts_an_openai_chat_completion() -> None:
    with serve_chat(lambda m: f"hi, you said {m[-1]['content']!r}") as server:
        client = OpenAICompatClient(server["url"] + "/", api_key="sk-test", model="tiny")
        assert isinstance(client, ChatClient)
        assert client.complete(ASK, temperature=0.3, max_tokens=17) == "hi, you said 'Say hi'"
    request = server["requests"][0]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test"
    assert request["body"] == {"model": "tiny", "messages": ASK, "temperature": 0.3, "max_tokens": 17}


def test_http_errors_are_tuning_errors_without_endless_retries() -> None:
    with serve_chat(lambda m: "unused", status=401) as server:
        client = OpenAICompatClient(server["url"], api_key="wrong", model="tiny", backoff_s=0)
        with pytest.raises(TuningError, match="HTTP 401.*API key"):
            client.complete(ASK, 0.0, 8)
    assert len(server["requests"]) == 1, "a 401 is not retried"

    with serve_chat(lambda m: "unused", status=503) as server:
        client = OpenAICompatClient(server["url"], model="tiny", max_retries=2, backoff_s=0)
        with pytest.raises(TuningError, match="HTTP 503"):
            client.complete(ASK, 0.0, 8)
    assert len(server["requests"]) == 3, "503 is retried max_retries times, then reported"


def test_unreachable_endpoint_and_malformed_reply() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAICompatClient(f"http://127.0.0.1:{port}/v1", model="tiny", max_retries=1,
                                backoff_s=0)
    with pytest.raises(TuningError, match="cannot reach"):
        client.complete(ASK, 0.0, 8)

    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"answer": "hi"}))
    client = OpenAICompatClient("http://llm.invalid/v1", model="tiny", transport=transport)
    with pytest.raises(TuningError, match="OpenAI chat completion"):
        client.complete(ASK, 0.0, 8)
    with pytest.raises(TuningError, match="http"):
        OpenAICompatClient("llm.example.com/v1", model="tiny")


def test_generator_client_uses_the_local_generator() -> None:
    gen = ScriptedGenerator(lambda m: "one two three four five six")
    client = GeneratorClient(gen)
    assert isinstance(client, ChatClient)
    assert client.complete(ASK, temperature=0.5, max_tokens=3) == "one two three"
    assert gen.calls == [ASK]
