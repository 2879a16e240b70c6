"""API keys: created once (the secret is shown then and never again), stored as a salted hash.

A key reads `rt_<id>_<secret>`; the id finds the record, the secret is checked against
sha256(salt + secret) in constant time. Each key has a scope (read < write < admin) and, optionally,
the collections it may touch. Records live in `DATA_DIR/keys.json`, replaced atomically; the store
rereads it when it changes on disk, so `ragtune keys revoke` takes effect on a running server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

SCOPES = ("read", "write", "admin")
KEY_RE = re.compile(r"rt_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})\Z")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


class KeyProblem(ValueError):
    """A key that cannot be created or found as asked (bad name, scope, duplicate, unknown)."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scope: str
    salt: str
    digest: str
    created_at: str
    collections: list[str] | None = None  # None: every collection
    revoked_at: str | None = None

    def allows(self, needed: str, collection: str | None = None) -> bool:
        """Whether this key may do something that needs scope `needed` (on `collection`)."""
        if self.revoked_at is not None or SCOPES.index(self.scope) < SCOPES.index(needed):
            return False
        return collection is None or self.collections is None or collection in self.collections

    def public(self) -> dict[str, object]:
        """The record without its salt and digest."""
        return {k: v for k, v in asdict(self).items() if k not in ("salt", "digest")}


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


@dataclass
class KeyStore:
    """The keys of one data dir."""

    path: Path
    _cache: tuple[tuple[int, int], dict[str, ApiKey]] | None = field(default=None, repr=False)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> KeyStore:
        return cls(Path(data_dir) / "keys.json")

    def _load(self) -> dict[str, ApiKey]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        records = json.loads(self.path.read_text(encoding="utf-8"))
        keys = {r["id"]: ApiKey(**r) for r in records}
        self._cache = (stamp, keys)
        return keys

    def _save(self, keys: dict[str, ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".keys-{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump([asdict(k) for k in keys.values()], fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._cache = None

    def records(self) -> list[ApiKey]:
        return sorted(self._load().values(), key=lambda k: k.created_at)

    def active(self) -> bool:
        """Whether any key is in force (then every request needs one)."""
        return any(k.revoked_at is None for k in self._load().values())

    def create(self, name: str, scope: str, collections: list[str] | None = None) -> tuple[ApiKey, str]:
        """A new key and its full secret text (shown once)."""
        if not NAME_RE.match(name):
            raise KeyProblem(f"key name {name!r} must be 1-64 letters, digits, '_', '-' or '.'")
        if scope not in SCOPES:
            raise KeyProblem(f"scope {scope!r} must be one of {', '.join(SCOPES)}")
        keys = self._load()
        if any(k.name == name and k.revoked_at is None for k in keys.values()):
            raise KeyProblem(f"a key named {name!r} is already in force; revoke it or pick another name")
        if collections is not None:
            collections = sorted({c.strip() for c in collections if c.strip()})
            if not collections:
                raise KeyProblem("--collections names no collection")
        key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
        key = ApiKey(id=key_id, name=name, scope=scope, salt=salt, digest=_digest(salt, secret),
                     created_at=datetime.now(UTC).isoformat(), collections=collections)
        self._save({**keys, key_id: key})
        return key, f"rt_{key_id}_{secret}"

    def revoke(self, name_or_id: str) -> ApiKey:
        keys = self._load()
        found = [k for k in keys.values() if name_or_id in (k.id, k.name) and k.revoked_at is None]
        if not found:
            raise KeyProblem(f"no key in force is named or numbered {name_or_id!r}")
        revoked = {**keys}
        for k in found:
            revoked[k.id] = ApiKey(**{**asdict(k), "revoked_at": datetime.now(UTC).isoformat()})
        self._save(revoked)
        return revoked[found[0].id]

    def check(self, presented: str) -> ApiKey | None:
        """The key in force that `presented` is, or None."""
        match = KEY_RE.match(presented.strip())
        if match is None:
            return None
        key = self._load().get(match.group(1))
        if key is None or key.revoked_at is not None:
            return None
        return key if hmac.compare_digest(key.digest, _digest(key.salt, match.group(2))) else None
