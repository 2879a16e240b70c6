"""The set of collections under one data directory: create, open (cached), list, delete.

A collection is created in a temporary directory and renamed into place, and deleted by renaming it
away before removal, so a crash never leaves a half-made or half-deleted collection visible.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from .collection import Collection, CollectionConfig
from .errors import CollectionExists, CollectionNotFound, InvalidName

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str) -> None:
    if not NAME_RE.match(name) or ".." in name:
        raise InvalidName(
            f"collection name {name!r} must be 1-64 characters of letters, digits, '_', '-', '.', "
            "starting with a letter or digit"
        )


class Catalog:
    def __init__(self, root: Path, use_gpu: bool | None = None) -> None:
        self.root = root / "collections"
        self.root.mkdir(parents=True, exist_ok=True)
        self._use_gpu = use_gpu
        self._open: dict[str, Collection] = {}
        self._lock = threading.Lock()
        for stale in self.root.glob(".*"):  # leftovers of interrupted creates/deletes
            shutil.rmtree(stale, ignore_errors=True)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if not p.name.startswith(".") and (p / "collection.json").exists())

    def exists(self, name: str) -> bool:
        return NAME_RE.match(name) is not None and (self.root / name / "collection.json").exists()

    def create(self, config: CollectionConfig) -> Collection:
        check_name(config.name)
        with self._lock:
            final = self.root / config.name
            if final.exists():
                raise CollectionExists(config.name)
            config.created_at = datetime.now(UTC).isoformat()
            tmp = self.root / f".new-{uuid.uuid4().hex}"
            tmp.mkdir()
            (tmp / "collection.json").write_text(config.to_json())
            tmp.rename(final)
        return self.get(config.name)

    def get(self, name: str) -> Collection:
        with self._lock:
            if name in self._open:
                return self._open[name]
            if not self.exists(name):
                raise CollectionNotFound(name)
            path = self.root / name
            config = CollectionConfig(**json.loads((path / "collection.json").read_text()))
            coll = Collection(path, config, use_gpu=self._use_gpu)
            self._open[name] = coll
            return coll

    def delete(self, name: str) -> None:
        with self._lock:
            if not self.exists(name):
                raise CollectionNotFound(name)
            coll = self._open.pop(name, None)
            if coll is not None:
                coll.close()
            trash = self.root / f".deleted-{uuid.uuid4().hex}"
            (self.root / name).rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            for coll in self._open.values():
                coll.close()
            self._open.clear()
