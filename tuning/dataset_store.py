"""Stored datasets: uploaded once, checked in full, kept by content hash, referred to by id.

Three kinds: `train` (instruction data, any format `tuning.datasets` reads), `labelled` (text,label
rows for a linear probe) and `questions` (a golden set in the kb_dev format, for a job's gate). A
file is checked as its kind before it is stored, so a job never starts on data that cannot train;
storing the same bytes again gives the same id.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .datasets import dataset_hash, detect_format, load_samples, read_records
from .errors import DatasetError, DatasetNotFound, InvalidConfig

KINDS = ("train", "labelled", "questions")
SUFFIXES = (".jsonl", ".json", ".csv")
META = "dataset.json"
ID_RE = re.compile(r"^[0-9a-f]{16}\Z")


@dataclass(frozen=True)
class DatasetRecord:
    id: str
    filename: str
    kind: str
    format: str
    records: int
    bytes: int
    sha256: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def validate(path: Path, kind: str, fmt: str = "auto", text_column: str = "text",
             label_column: str = "label") -> tuple[str, int]:
    """(format, record count) of `path` read as `kind`; DatasetError naming line and field if not."""
    if kind == "train":
        samples = load_samples(path, fmt, text_column)
        first = next(iter(read_records(path)))[1]
        if isinstance(first, list):  # a CSV header: the format is told by its column names
            first = dict.fromkeys(first, "")
        return detect_format(first, fmt, text_column), len(samples)
    if kind == "labelled":
        from .probe import load_labelled

        texts, _ = load_labelled(path, text_column=text_column, label_column=label_column)
        return "labelled", len(texts)
    if kind == "questions":
        from generation.evaluation import parse_question

        n = 0
        for line, rec in read_records(path):
            try:
                if not isinstance(rec, dict):
                    raise DatasetError("each question must be a JSON object", line=line)
                parse_question(rec, "question")
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(str(exc), line=line) from None
            n += 1
        if not n:
            raise DatasetError(f"{path.name}: no questions")
        return "questions", n
    raise InvalidConfig(f"dataset kind {kind!r} must be one of {', '.join(KINDS)}")


class DatasetStore:
    """Datasets under `root/<id>/` (the file under its own name, plus dataset.json)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def add(self, src: Path, filename: str | None = None, kind: str = "train", fmt: str = "auto",
            text_column: str = "text", label_column: str = "label") -> DatasetRecord:
        """Check `src` as `kind` and store it; the record of an identical stored file if there is one."""
        filename = Path(filename or src.name).name
        if Path(filename).suffix.lower() not in SUFFIXES:
            raise DatasetError(f"{filename}: a dataset must be {', '.join(SUFFIXES)}")
        digest = dataset_hash(src)
        ds_id = digest[:16]
        if (self.root / ds_id / META).is_file():
            return self.get(ds_id)
        found_fmt, n = validate(src, kind, fmt, text_column, label_column)
        staged = self.root / f".tmp-{uuid.uuid4().hex[:8]}"
        staged.mkdir()
        try:
            shutil.copyfile(src, staged / filename)
            record = DatasetRecord(id=ds_id, filename=filename, kind=kind, format=found_fmt, records=n,
                                   bytes=(staged / filename).stat().st_size, sha256=digest,
                                   created_at=datetime.now(UTC).isoformat())
            (staged / META).write_text(json.dumps(record.to_json(), indent=2) + "\n")
            staged.rename(self.root / ds_id)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return record

    def get(self, ds_id: str) -> DatasetRecord:
        meta = self.root / ds_id / META
        if not ID_RE.match(ds_id) or not meta.is_file():
            raise DatasetNotFound(f"dataset {ds_id!r} is not stored; upload it to "
                                  "POST /v1/tuning/datasets (or give a file) first")
        return DatasetRecord(**json.loads(meta.read_text()))

    def path(self, ds_id: str) -> Path:
        record = self.get(ds_id)
        return self.root / ds_id / record.filename

    def list(self) -> list[DatasetRecord]:
        return sorted((self.get(d.name) for d in self.root.iterdir()
                       if ID_RE.match(d.name) and (d / META).is_file()),
                      key=lambda r: r.created_at, reverse=True)

    def delete(self, ds_id: str) -> None:
        self.get(ds_id)
        shutil.rmtree(self.root / ds_id)
