"""Deterministic chat models for the synthetic-data tests, in process or behind a loopback HTTP server.

`UseCaseReplies` answers the three kinds of request `generate_use_case` makes from scripted lists;
`KB` is a small knowledge base whose every chunk has one question it answers, and `kb_replies`
answers the question-writing request for any of its chunks.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Messages = list[dict[str, str]]
ReplyFn = Callable[[Messages], str]

SYSTEM = "You are Pipes, a friendly plumbing assistant. You give safe, practical advice."


class ScriptedChat:
    """A ChatClient that answers with `reply_fn(messages)` and keeps every request."""

    def __init__(self, reply_fn: ReplyFn) -> None:
        self.reply_fn = reply_fn
        self.calls: list[tuple[Messages, float, int]] = []

    def complete(self, messages: Messages, temperature: float, max_tokens: int) -> str:
        self.calls.append(([dict(m) for m in messages], temperature, max_tokens))
        return self.reply_fn(messages)


class UseCaseReplies:
    """System request -> SYSTEM; prompt requests -> the next of `prompts`; other -> a response.

    `empty_for` lists prompts whose response comes back empty.
    """

    def __init__(self, prompts: list[str], empty_for: tuple[str, ...] = ()) -> None:
        self.prompts = list(prompts)
        self.empty_for = empty_for
        self.next = 0

    def __call__(self, messages: Messages) -> str:
        first = messages[0]["content"]
        if first.startswith("You write system messages"):
            return f'System message: "{SYSTEM}"'
        if first.startswith("You write realistic messages"):
            prompt = self.prompts[self.next % len(self.prompts)]
            self.next += 1
            return prompt
        user = messages[-1]["content"]
        return "" if user in self.empty_for else f"Here is how to handle it: {user.lower()} Done."


# (source, text, question): each document holds one fact, in words no other document uses
KB = [
    ("harbour.txt", "The harbour office opens at nine in the morning on weekdays and closes at "
                    "five in the afternoon.", "When does the harbour office open on weekdays?"),
    ("parking.txt", "Visitor parking costs four pounds per hour, payable by card at the yellow "
                    "machine.", "How much does visitor parking cost per hour?"),
    ("wifi.txt", "Guest wifi password is printed on the reception desk card and changes every "
                 "Monday.", "Where can guests find the wifi password?"),
    ("canteen.txt", "The canteen serves vegetarian curry every Thursday lunchtime in the east "
                    "wing.", "Which day does the canteen serve vegetarian curry?"),
    ("badges.txt", "Lost security badges must be reported to facilities within twenty-four "
                   "hours.", "How soon must a lost security badge be reported?"),
    ("bikes.txt", "Bicycle racks stand beside the north gate, sheltered under a green canopy.",
     "Where are the bicycle racks?"),
    ("fire.txt", "Fire drills happen quarterly; assemble on the tennis courts behind building C.",
     "Where do staff assemble during fire drills?"),
    ("printer.txt", "Colour printing requires a departmental code entered on the printer keypad.",
     "What is needed for colour printing?"),
]


def kb_replies(messages: Messages) -> str:
    """The question-writing request about a KB chunk -> 'Question: ...\\nAnswer: ...'."""
    user = messages[-1]["content"]
    for _, text, question in KB:
        if text in user:
            return f"Question: {question}\nAnswer: {text} [1]"
    return "I am not sure what you mean."


@contextmanager
def serve_chat(reply_fn: ReplyFn, status: int = 200) -> Iterator[dict[str, Any]]:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1; yields {"url", "requests"}."""
    state: dict[str, Any] = {"requests": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append({"path": self.path, "body": body,
                                      "auth": self.headers.get("Authorization")})
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": "no such route"})
            elif status != 200:
                self._send(status, {"error": {"message": "invalid api key"}})
            else:
                content = reply_fn(body["messages"])
                self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})

        def _send(self, code: int, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
