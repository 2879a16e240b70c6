"""Training data: read JSONL, JSON arrays and CSV, check every record, and turn each into chat messages.

Four formats are understood: `alpaca` (instruction, input?, output), `chat` (messages ending with an
assistant turn), `prompt_completion` (prompt, completion) and `text` (one plain-text column). The whole
file is checked before any training starts; up to `MAX_PROBLEMS` problems are collected and raised as
one DatasetError, each naming its 1-based line (for a JSON array, the record's index + 1) and field.
Tokenisation with loss masks lives in `tuning.tokenization`, which reads the Samples made here.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import DatasetError

__all__ = [
    "FORMATS", "Messages", "Sample", "dataset_hash", "detect_format", "load_samples", "read_records",
    "split", "to_sample",
]

FORMATS = ("alpaca", "chat", "prompt_completion", "text")
ROLES = ("system", "user", "assistant")
MAX_PROBLEMS = 20
Messages = list[dict[str, str]]
T = TypeVar("T")


@dataclass(frozen=True)
class Sample:
    """One validated record: chat messages, or (format `text`) a plain text trained on whole."""

    line: int
    messages: Messages = field(default_factory=list)
    text: str | None = None


MAX_EXAMPLE_CHARS = 100_000  # about 25k tokens: far past any context ragtune trains with
DEEP = "nested too deeply (JSON deeper than Python can read)"

def dataset_hash(path: str | Path) -> str:
    """sha256 of the file's bytes: what an adapter records about the data it was trained on."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line, record) pairs of a .jsonl, .json (array, or JSON lines) or .csv file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix not in (".jsonl", ".ndjson", ".json"):
        raise DatasetError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json or .csv")
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".json" and text.lstrip().startswith("["):
        return _read_json_array(text)
    return _read_jsonl(text)


def _read_jsonl(text: str) -> Iterator[tuple[int, Any]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as exc:
            yield number, DatasetError(f"invalid JSON: {exc.msg} (column {exc.colno})", number)
        except RecursionError:
            yield number, DatasetError(f"invalid JSON: {DEEP}", number)


def _read_json_array(text: str) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from exc
    except RecursionError:
        raise DatasetError(f"invalid JSON: {DEEP}") from None
    if not isinstance(data, list):
        raise DatasetError(f"a .json file must hold an array of records, not {type(data).__name__}")
    yield from ((index + 1, record) for index, record in enumerate(data))


def _read_csv(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            return
        yield 1, list(reader.fieldnames)  # the header, checked by load_samples
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DatasetError(f"unreadable CSV: {exc}", start) from exc
            if None in row:  # DictReader's place for fields past the header's
                extra = len(row[None])  # type: ignore[index]
                yield start, DatasetError(f"{extra} more field(s) than the header's "
                                          f"{len(reader.fieldnames)} (quote values that hold commas)",
                                          start)
                continue
            yield start, dict(row)


def detect_format(record: Any, override: str = "auto", text_column: str = "text") -> str:
    """The format of `record` (or `override` when it is not 'auto')."""
    if override != "auto":
        if override not in FORMATS:
            raise DatasetError(f"format {override!r} must be auto or one of {', '.join(FORMATS)}")
        return override
    keys = set(record) if isinstance(record, dict) else set()
    if "messages" in keys:
        return "chat"
    if "instruction" in keys:
        return "alpaca"
    if "prompt" in keys:
        return "prompt_completion"
    if text_column in keys:
        return "text"
    raise DatasetError(
        f"cannot tell the format from the fields {sorted(keys)}: expected messages (chat), "
        f"instruction+output (alpaca), prompt+completion (prompt_completion) or {text_column!r} "
        "(text); or pass the format explicitly"
    )


REQUIRED_COLUMNS = {"alpaca": ("instruction", "output"), "chat": ("messages",),
                    "prompt_completion": ("prompt", "completion")}


def _csv_format(records: Iterator[tuple[int, Any]], fmt: str, text_column: str) -> str:
    """Read the CSV header (the first item of `records`), detect the format and check its columns."""
    header = next(records, None)
    if header is None:
        raise DatasetError("the file holds no records (not even a header)")
    columns = list(header[1])
    fmt = detect_format(dict.fromkeys(columns, ""), fmt, text_column)
    for column in REQUIRED_COLUMNS.get(fmt, (text_column,)):
        if column not in columns:
            raise DatasetError(f"missing column (the header has {', '.join(columns)})", 1, column)
    return fmt


def load_samples(path: str | Path, fmt: str = "auto", text_column: str = "text") -> list[Sample]:
    """Every record of `path` as a Sample; raises one DatasetError listing what is wrong, if anything.

    The format is `fmt`, or detected from the first record (for CSV, from the header).
    """
    records = read_records(path)
    if Path(path).suffix.lower() == ".csv":
        fmt = _csv_format(records, fmt, text_column)
    samples: list[Sample] = []
    problems: list[DatasetError] = []
    total = 0
    for line, record in records:
        try:
            if isinstance(record, DatasetError):
                raise record
            fmt = detect_format(record, fmt, text_column) if fmt == "auto" else fmt
            samples.append(to_sample(record, fmt, line, text_column))
        except DatasetError as exc:
            exc.line = line if exc.line is None else exc.line
            total += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(exc)
    if problems:
        shown = "\n".join(f"  {p}" for p in problems)
        more = f" (the first {len(problems)} shown)" if total > len(problems) else ""
        raise DatasetError(f"{path}: {total} invalid record(s){more}:\n{shown}", problems=problems)
    if not samples:
        raise DatasetError(f"{path}: the file holds no records")
    return samples


def to_sample(record: Any, fmt: str, line: int, text_column: str = "text") -> Sample:
    """Check one record of format `fmt` and normalise it (alpaca: user = instruction + input)."""
    if not isinstance(record, dict):
        raise DatasetError(f"must be an object with named fields, not {type(record).__name__}", line)
    sample = _to_sample(record, fmt, line, text_column)
    size = len(sample.text or "") + sum(len(m["content"]) for m in sample.messages or ())
    if size > MAX_EXAMPLE_CHARS:
        raise DatasetError(f"the example is {size:,} characters; the limit is {MAX_EXAMPLE_CHARS:,} "
                           "(a training example is truncated to the model's context anyway)", line)
    return sample


def _to_sample(record: dict[str, Any], fmt: str, line: int, text_column: str) -> Sample:
    if fmt == "text":
        return Sample(line, text=_text(record, text_column, line))
    if fmt == "chat":
        return Sample(line, messages=_chat(record, line))
    if fmt == "prompt_completion":
        prompt, completion = _text(record, "prompt", line), _text(record, "completion", line)
        return Sample(line, [{"role": "user", "content": prompt},
                             {"role": "assistant", "content": completion}])
    instruction, output = _text(record, "instruction", line), _text(record, "output", line)
    extra = record.get("input")
    if extra is not None and not isinstance(extra, str):
        raise DatasetError("must be a string when present", line, "input")
    user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    return Sample(line, [{"role": "user", "content": user}, {"role": "assistant", "content": output}])


def _text(record: dict[str, Any], name: str, line: int) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        state = "is missing" if name not in record else "must be a non-empty string"
        raise DatasetError(state, line, name)
    return value


def _chat(record: dict[str, Any], line: int) -> Messages:
    messages = record.get("messages")
    if isinstance(messages, str):  # a CSV cell holding JSON
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"invalid JSON: {exc.msg}", line, "messages") from exc
        except RecursionError:
            raise DatasetError(f"invalid JSON: {DEEP}", line, "messages") from None
    if not isinstance(messages, list) or not messages:
        raise DatasetError("must be a non-empty list of {role, content} objects", line, "messages")
    out: Messages = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise DatasetError("must be an object with role and content", line, where)
        if msg.get("role") not in ROLES:
            raise DatasetError(f"role {msg.get('role')!r} must be one of {', '.join(ROLES)}",
                               line, f"{where}.role")
        if not isinstance(msg.get("content"), str):
            raise DatasetError("must be a string", line, f"{where}.content")
        out.append({"role": msg["role"], "content": msg["content"]})
    if out[-1]["role"] != "assistant":
        raise DatasetError("the last message must be the assistant's (the answer to learn)",
                           line, f"messages[{len(out) - 1}].role")
    if not out[-1]["content"].strip():
        raise DatasetError("the assistant's answer is empty", line, f"messages[{len(out) - 1}].content")
    return out


def split(examples: Sequence[T], val_fraction: float = 0.1, seed: int = 42) -> tuple[list[T], list[T]]:
    """(train, validation), the same for the same inputs; at least one example stays for training."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction {val_fraction!r} must be in [0, 1)")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = min(round(len(examples) * val_fraction), len(examples) - 1) if val_fraction else 0
    n_val = max(n_val, 1) if val_fraction and len(examples) >= 2 else n_val
    val_idx = set(order[:n_val])
    train = [e for i, e in enumerate(examples) if i not in val_idx]
    return train, [examples[i] for i in sorted(val_idx)]
