"""Spooling uploaded files to disk within the per-file size limit (RAGTUNE_MAX_UPLOAD_MB)."""

from __future__ import annotations

import unicodedata
from pathlib import Path, PurePath

from fastapi import UploadFile

from .errors import BadRequest, UploadTooLarge

MAX_NAME_BYTES = 200  # under every file system's 255, leaving room for a suffix


def upload_name(raw: str | None) -> str:
    """The file name to store an upload under: its last path part, without control or bidi
    characters; an empty, hidden, `.`/`..` or over-long name is a 422 naming it."""
    name = PurePath((raw or "").replace("\\", "/")).name
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf")).strip()
    if not name or name.startswith("."):
        raise BadRequest(f"file name {raw!r} is empty or hidden")
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise BadRequest(f"file name {name[:40]!r}... is {size} bytes; the limit is "
                         f"{MAX_NAME_BYTES}")
    return name


def copy_bounded(upload: UploadFile, dest: Path, limit: int, limit_mb: float) -> None:
    """Copy an upload to disk, refusing it once it passes the limit (its size may be unknown)."""
    written = 0
    with open(dest, "wb") as out:
        while block := upload.file.read(1024 * 1024):
            written += len(block)
            if written > limit:
                raise UploadTooLarge(dest.name, limit_mb)
            out.write(block)
