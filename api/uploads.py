"""Spooling uploaded files to disk within the per-file size limit (RAGTUNE_MAX_UPLOAD_MB)."""

from __future__ import annotations

from pathlib import Path

from fastapi import UploadFile

from .errors import UploadTooLarge


def copy_bounded(upload: UploadFile, dest: Path, limit: int, limit_mb: float) -> None:
    """Copy an upload to disk, refusing it once it passes the limit (its size may be unknown)."""
    written = 0
    with open(dest, "wb") as out:
        while block := upload.file.read(1024 * 1024):
            written += len(block)
            if written > limit:
                raise UploadTooLarge(dest.name, limit_mb)
            out.write(block)
