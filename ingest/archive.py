"""Files that hold many documents: .zip archives and BEIR-style JSONL corpora (also gzipped).

A zip is checked as a whole against entry and size limits and for unsafe member names before any
member is read; members are read in memory in bounded chunks (sizes declared in a zip can lie) and
nothing is ever written to disk. A JSONL corpus is validated line by line before any document
is made.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from ingest.errors import ArchiveError, DocumentLoadError
from ingest.types import FileFailure, LoadedDocument, Page

_CHUNK = 1 << 16
_DRIVE = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[/\\]")
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError)


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what one .zip may expand to; an archive over either bound is refused as a whole."""

    max_entries: int = 10_000
    """Most entries (files and folders) an archive may list."""
    max_total_bytes: int = 1_000_000_000
    """Most uncompressed bytes across all members, both as declared in the archive and as read."""

    def __post_init__(self) -> None:
        for name in ("max_entries", "max_total_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ArchiveLimits.{name} must be a positive integer, got {value!r}")


def read_at_most(stream: IO[bytes] | io.BufferedIOBase, limit: int) -> bytes:
    """Read `stream` to its end, or to one byte past `limit`: callers check `len(out) > limit`."""
    parts: list[bytes] = []
    size = 0
    while size <= limit and (chunk := stream.read(min(_CHUNK, limit + 1 - size))):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def iter_members(
    source: str, file: IO[bytes], limits: ArchiveLimits, wanted: Callable[[str], bool],
    report_skipped: bool = True,
) -> Iterator[tuple[str, bytes] | FileFailure]:
    """Yield `(member source, bytes)` for each member whose name passes `wanted`, or a FileFailure
    for a member that cannot be read. Member sources read "archive.zip/inner/path.md".

    Folders and hidden members ("." or "__MACOSX" path parts) are skipped silently; a member whose
    name is not `wanted` yields a FileFailure saying it was skipped (unless not `report_skipped`), as
    do a symbolic link and a nested .zip. Raises DocumentLoadError for a corrupt or empty archive,
    and ArchiveError when the archive breaks a limit or names an unsafe path — the latter before any
    member is read.
    """
    with _open(source, file) as archive:
        remaining = limits.max_total_bytes
        entries = _checked_entries(source, archive, limits)
        if not entries:
            raise DocumentLoadError(source, "the archive holds no files")
        for info in entries:
            member = f"{source}/{_member_name(info)}"
            if _is_symlink(info):
                yield FileFailure(member, "a symbolic link: skipped (links are not followed)")
                continue
            if not wanted(_member_name(info).split("/")[-1]):
                if report_skipped:
                    yield FileFailure(member, "unsupported file type: skipped")
                continue
            if member.lower().endswith(".zip"):
                yield FileFailure(member, "nested archives are not supported")
                continue
            if info.flag_bits & 0x1:
                yield FileFailure(member, "encrypted archive member: a password is required")
                continue
            try:
                data = _read_member(archive, info, remaining)
            except _READ_ERRORS as exc:
                yield FileFailure(member, f"cannot read archive member ({exc})")
                continue
            if len(data) > remaining:
                raise ArchiveError(
                    source,
                    f"members expand beyond the limit of {limits.max_total_bytes:,} bytes "
                    f"although their declared sizes do not (zip bomb?); stopped at {member}",
                )
            remaining -= len(data)
            yield member, data


def count_members(file: IO[bytes]) -> int:
    """How many members `iter_members` would yield for this archive, without reading any of them."""
    with zipfile.ZipFile(file) as archive:
        return sum(1 for info in archive.infolist() if _selected(info))


def _open(source: str, file: IO[bytes]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(file)
    except _READ_ERRORS as exc:
        raise DocumentLoadError(source, f"corrupt or unreadable zip archive ({exc})") from exc


def _checked_entries(
    source: str, archive: zipfile.ZipFile, limits: ArchiveLimits
) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveError(
            source,
            f"archive has {len(infos):,} entries, more than the limit of {limits.max_entries:,}",
        )
    for info in infos:
        if _is_unsafe(info.filename):
            raise ArchiveError(
                source,
                f"unsafe entry {info.filename!r}: absolute paths and '..' are not allowed "
                "(nothing was extracted)",
            )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_total_bytes:
        raise ArchiveError(
            source,
            f"archive expands to {declared:,} bytes, more than the limit of "
            f"{limits.max_total_bytes:,} bytes",
        )
    return [info for info in infos if _selected(info)]


def _is_unsafe(name: str) -> bool:
    return (
        name.startswith(("/", "\\")) or bool(_DRIVE.match(name)) or ".." in _SEPARATORS.split(name)
    )


def _member_name(info: zipfile.ZipInfo) -> str:
    # Some Windows tools store backslashes; sources always use forward slashes.
    return info.filename.replace("\\", "/")


def _selected(info: zipfile.ZipInfo) -> bool:
    """A file member that is not operating-system clutter (hidden files, __MACOSX)."""
    if info.is_dir():
        return False
    parts = _member_name(info).split("/")
    return not any(part.startswith(".") or part == "__MACOSX" for part in parts)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    with archive.open(info) as stream:
        return read_at_most(stream, limit)


# --- JSONL corpora (many documents in one file) ------------------------------------------------


def load_jsonl(source: str, data: bytes) -> list[LoadedDocument]:
    """Read a BEIR-style corpus, one document per line: {"_id" or "id", "title"?, "text"}.

    Every line is checked before any document is built, so a bad line fails the whole file with a
    DocumentLoadError naming its 1-based line number."""
    records: list[tuple[str, bytes, str, str]] = []
    first_line: dict[str, int] = {}
    lines = data.removeprefix(codecs.BOM_UTF8).split(b"\n")
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip(b"\r")
        if not line.strip():
            continue
        doc_id, title, text = _parse_record(source, number, line)
        if doc_id in first_line:
            first = first_line[doc_id]
            raise DocumentLoadError(
                source, f"line {number}: duplicate id {doc_id!r} (first on line {first})"
            )
        first_line[doc_id] = number
        records.append((doc_id, line, title, text))
    if not records:
        raise DocumentLoadError(source, "empty file: no records to index")
    return [_jsonl_document(source, *record) for record in records]


def _parse_record(source: str, number: int, line: bytes) -> tuple[str, str, str]:
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DocumentLoadError(
            source, f"line {number}: invalid JSON ({short_message(exc)})"
        ) from exc
    if not isinstance(record, dict):
        raise DocumentLoadError(source, f"line {number}: expected a JSON object")
    doc_id = record.get("_id", record.get("id"))
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int) or not str(doc_id).strip():
        raise DocumentLoadError(source, f'line {number}: missing "_id" (or "id")')
    title, text = record.get("title") or "", record.get("text")
    if not isinstance(text, str) or not isinstance(title, str):
        raise DocumentLoadError(source, f'line {number}: missing "text" (or "title" not a string)')
    if not (title + text).strip():
        raise DocumentLoadError(source, f"line {number}: empty text")
    return str(doc_id), title.strip(), text


def _jsonl_document(source: str, doc_id: str, line: bytes, title: str, text: str) -> LoadedDocument:
    body = f"{title}\n\n{text}" if title and text.strip() else title or text
    metadata: dict[str, Any] = {"id": doc_id}
    if title:
        metadata["title"] = title
    return LoadedDocument(f"{source}#{doc_id}", line, [Page(body)], "jsonl", metadata)


def gunzip(source: str, data: bytes, limit: int) -> bytes:
    """Decompress a .gz file in memory, refusing to expand it beyond `limit` bytes."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            out = read_at_most(stream, limit)
    except (OSError, EOFError, zlib.error) as exc:
        raise DocumentLoadError(source, f"corrupt gzip file ({short_message(exc)})") from exc
    if len(out) > limit:
        raise DocumentLoadError(source, f"decompresses to more than the limit of {limit:,} bytes")
    return out


def short_message(exc: BaseException) -> str:
    """An exception as a short, non-empty phrase to put in a failure reason."""
    message = str(exc).strip() or type(exc).__name__
    return message if len(message) <= 200 else message[:197] + "..."
