"""Screening a tuning dataset before training: which records hold offensive text, by line and field.

Every string in a record is screened (chat messages' contents, instruction/input/output, text,
answers), in batches; a record that is not an object (a CSV's header) or does not parse is left to
the dataset's own checks, which run when it is trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuning.datasets import read_records

from .screen import Screen

SNIPPET = 160


@dataclass(frozen=True)
class FlaggedText:
    line: int
    field: str  # where in the record: "messages[1].content", "output", ...
    score: float
    terms: tuple[str, ...]
    text: str  # the first SNIPPET characters


@dataclass(frozen=True)
class DatasetScreening:
    screen: str
    records: int
    texts: int
    flagged: list[FlaggedText] = field(default_factory=list)

    @property
    def flagged_records(self) -> int:
        return len({f.line for f in self.flagged})


def strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(field path, text) of every non-empty string inside a JSON value."""
    if isinstance(value, str):
        if value.strip():
            yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings(item, f"{where}[{i}]")


def screen_dataset(path: str | Path, screen: Screen, batch_size: int = 256) -> DatasetScreening:
    """Screen every string of every record of a .jsonl, .json or .csv dataset."""
    records = 0
    pending: list[tuple[int, str, str]] = []
    flagged: list[FlaggedText] = []
    total = 0

    def flush() -> None:
        verdicts = screen.check_batch([text for _, _, text in pending])
        for (line, where, text), verdict in zip(pending, verdicts, strict=True):
            if verdict.flagged:
                flagged.append(FlaggedText(line, where, verdict.score, verdict.terms,
                                           text[:SNIPPET]))
        pending.clear()

    for line, record in read_records(path):
        if not isinstance(record, dict):  # a CSV's header, a broken line: not data to screen
            continue
        records += 1
        for where, text in strings(record):
            pending.append((line, where, text))
            total += 1
            if len(pending) >= batch_size:
                flush()
    if pending:
        flush()
    return DatasetScreening(screen.name, records, total, flagged)
