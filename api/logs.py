"""The server's logs: one JSON object a line (or plain text on a terminal), each carrying the id of
the request it was written for.

The request id lives in a context variable set by the request middleware (api/telemetry.py);
threads that serve the request (sync routes, streamed bodies) see it because Starlette copies the
context into them, and logs written outside any request (the ingest worker, start-up) carry none.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["auto", "json", "plain"]

request_id: ContextVar[str | None] = ContextVar("ragtune_request_id", default=None)

# what every LogRecord has; anything else on a record came from `extra=` and is written out
# (but uvicorn's `color_message`, the message again with terminal colours)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message"}
NOISY = ("httpx", "sentence_transformers", "faiss", "multipart")


def request_id_header() -> dict[str, str]:
    """{"X-Request-ID": id} for a reply sent past the request middleware (the 500 handler)."""
    rid = request_id.get()
    return {"X-Request-ID": rid} if rid else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id, the record's `extra`
    fields (method, path, route, status, duration_ms on access lines), and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        entry.update({k: v for k, v in vars(record).items()
                      if k not in _STANDARD and k != "request_id"})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    """`LEVEL logger: message [request id]`, for reading on a terminal."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text, rid = super().format(record), request_id.get()
        if not rid:
            return text
        first, _, rest = text.partition("\n")  # the id on the message's line, not a traceback's
        return f"{first} [{rid}]" + (f"\n{rest}" if rest else "")


def resolve_format(fmt: LogFormat, stream: Any = None) -> Literal["json", "plain"]:
    """`auto` is plain text on a terminal and JSON otherwise (a service manager, a container, a
    file: whatever collects the logs reads them as data)."""
    if fmt != "auto":
        return fmt
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "plain" if isatty is not None and isatty() else "json"


def configure(fmt: LogFormat = "auto", level: int = logging.INFO) -> Literal["json", "plain"]:
    """Send every log record (uvicorn's included) to stderr in `fmt`; returns the format chosen."""
    chosen = resolve_format(fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # a warning per glyph it cannot map
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own handlers would print them twice
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    return chosen
