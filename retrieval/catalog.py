"""The set of collections under one data directory: create, open (cached), list, delete.

A collection is created in a temporary directory and renamed into place, and deleted by renaming it
away before removal, so a crash never leaves a half-made or half-deleted collection visible. Temporary
directories are named after their owner process and their start time; opening a catalog never
touches them, and `sweep_temp` (the server, once at start-up) removes only those left by a dead
process or too old to belong to any live one.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from .collection import Collection, CollectionConfig
from .docstore import Docstore
from .embedder import Embedder
from .errors import CollectionExists, CollectionNotFound, EmbedderMismatch, InvalidName
from .index import backend, fsync_replace
from .owners import current_owner, owner_gone
from .reindex import BuiltIndex, build_from_docstore

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
# .new-<owner>-<started, unix s>-<random> (a create) or .deleted-... (a delete being removed)
TEMP_RE = re.compile(r"^\.(?:new|deleted)-(\d+-[0-9a-f]{8})-(\d+)-[0-9a-f]+\Z")
LEGACY_TEMP_RE = re.compile(r"^\.(?:new|deleted)-[0-9a-f]{32}\Z")  # before owners were recorded
# A pid that looks dead may be a live process in another pid namespace sharing the volume; a create
# takes milliseconds (and removing a delete's leftovers twice is harmless), so waiting this long
# before trusting a dead owner costs nothing.
DEAD_OWNER_GRACE_S = 60.0
# Older than this, no live process is still writing a temporary directory, whoever owns it.
STALE_TEMP_S = 24 * 3600.0


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

    def _temp_dir(self, kind: str) -> Path:
        return self.root / f".{kind}-{current_owner()}-{int(time.time())}-{uuid.uuid4().hex[:8]}"

    def sweep_temp(self) -> list[str]:
        """Remove temporary directories left by creates and deletes that were cut off; the names
        removed. Only those whose owner process is gone, or that are older than STALE_TEMP_S:
        never one that another live process is still writing."""
        now, removed = time.time(), []
        for path in self.root.iterdir():
            if path.is_dir() and _abandoned(path, now):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return sorted(removed)

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
            tmp = self._temp_dir("new")
            tmp.mkdir()
            try:
                (tmp / "collection.json").write_text(config.to_json())
                tmp.rename(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
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

    def open(self, name: str, embedder: Embedder) -> Collection:
        """Collection `name`, to be searched or filled with `embedder`'s vectors: refused when it
        was built with another embedder, whose vectors `embedder`'s queries cannot be compared with."""
        coll = self.get(name)
        if coll.config.embedder != embedder.name or coll.config.dim != embedder.dim:
            raise EmbedderMismatch(
                f"collection {name!r} was built with embedder {coll.config.embedder!r} "
                f"(dim {coll.config.dim}) but ragtune is running {embedder.name!r} "
                f"(dim {embedder.dim}); set RAGTUNE_EMBEDDER back or re-ingest into a new collection")
        return coll

    def reindex(self, name: str, index_type: str, queries: int = 200) -> BuiltIndex:
        """Give collection `name` a new `index_type` index built from its stored embeddings
        (nothing is re-embedded); what was built, with its recall@10 against exact search. The
        new index is saved before the collection names it, so a crash leaves the old one in use.
        Another process with the collection open keeps its old index until it opens it again."""
        backend(index_type)  # UnknownIndex before any work
        with self._lock:
            self._close_existing(name)
            path = self.root / name
            config = CollectionConfig(**json.loads((path / "collection.json").read_text()))
            docstore = Docstore(path / "docstore.sqlite")
            try:
                built = build_from_docstore(docstore, config.dim, index_type, queries=queries,
                                            use_gpu=self._use_gpu)
            finally:
                docstore.close()
            built.index.save(path / backend(index_type).file_name)
            old = path / backend(config.index_type).file_name
            config.index_type = index_type
            tmp = path / "collection.json.tmp"
            tmp.write_text(config.to_json())
            fsync_replace(tmp, path / "collection.json")
            if old != path / backend(index_type).file_name:
                old.unlink(missing_ok=True)
        return built

    def delete(self, name: str) -> None:
        with self._lock:
            self._close_existing(name)
            trash = self._temp_dir("deleted")
            (self.root / name).rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _close_existing(self, name: str) -> None:
        """Close collection `name` if this catalog has it open (under the lock); CollectionNotFound
        if there is none."""
        if not self.exists(name):
            raise CollectionNotFound(name)
        coll = self._open.pop(name, None)
        if coll is not None:
            coll.close()

    def close(self) -> None:
        with self._lock:
            for coll in self._open.values():
                coll.close()
            self._open.clear()


def _abandoned(path: Path, now: float) -> bool:
    """Whether temporary directory `path` was left by a create or delete that will never finish."""
    match = TEMP_RE.match(path.name)
    if match is None:
        if LEGACY_TEMP_RE.match(path.name) is None:
            return False  # not ours: leave it alone
        try:
            return now - path.stat().st_mtime > STALE_TEMP_S
        except OSError:  # removed meanwhile by its owner
            return False
    age = now - int(match[2])
    return age > STALE_TEMP_S or (age > DEAD_OWNER_GRACE_S and owner_gone(match[1]))
