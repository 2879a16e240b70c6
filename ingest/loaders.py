"""Turn files into LoadedDocuments: PDF, plain text, Markdown, HTML, BEIR-style JSONL and .zip.

`load_bytes` reads one file's bytes and raises a domain error; `iter_documents` walks files and
folders and never raises for a bad file, yielding a FileFailure with a reason a person can act on.
"""

from __future__ import annotations

import codecs
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import charset_normalizer
import pypdf
from pypdf.errors import DependencyError

from ingest import archive
from ingest.archive import ArchiveLimits, short_message
from ingest.errors import DocumentLoadError, IngestError, UnsupportedFileType
from ingest.html import EXTRA_BLANK_LINES, load_html
from ingest.types import FileFailure, LoadedDocument, Page

SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    ".pdf", ".txt", ".md", ".markdown", ".html", ".htm", ".zip", ".jsonl", ".jsonl.gz",
)  # fmt: skip

_DEFAULT_LIMITS = ArchiveLimits()
PageCallback = Callable[[str, int, int], None]
"""`(source, pages read, pages in all)`, called by the PDF reader after each page."""
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: the UTF-32 LE BOM starts with the UTF-16 one
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_MD_HEADING = re.compile(r" {0,3}#[ \t]+(.+?)[ \t#]*")
_MAGIC = (
    (b"\x7fELF", "an ELF executable"), (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "an empty ZIP archive"), (b"%PDF-", "a PDF"), (b"\x1f\x8b", "gzip data"),
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"\xd0\xcf\x11\xe0", "an old Office (OLE) file"), (b"7z\xbc\xaf", "a 7z archive"),
    (b"Rar!", "a RAR archive"),
)  # fmt: skip


def sniff_binary(data: bytes) -> str | None:
    """What a file named as text really holds, when it is not text (by its first bytes)."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return what
    if any(data.startswith(bom) for bom, _ in _BOMS):
        return None  # UTF-16/32 text has NUL bytes
    return "binary data (NUL bytes)" if b"\x00" in data[:8192] else None


def check_supported(name: str) -> None:
    """Raise UnsupportedFileType unless `name` ends with one of SUPPORTED_EXTENSIONS (any case)."""
    if _extension(name) not in SUPPORTED_EXTENSIONS:
        raise UnsupportedFileType(name, SUPPORTED_EXTENSIONS)


def load_bytes(
    name: str, data: bytes, *, archive_limits: ArchiveLimits = _DEFAULT_LIMITS,
    on_page: PageCallback | None = None,
) -> list[LoadedDocument]:
    """Read one file's bytes; the extension of `name` picks the format, `name` is the source.
    A PDF calls `on_page(name, pages read, pages in all)` after each page it reads; a
    DocumentLoadError raised there stops the read and fails the file with it.

    Raises UnsupportedFileType or DocumentLoadError. A .zip is all or nothing here: the first member
    that fails raises; use `iter_bytes` to keep the good members of an archive with a bad one.
    """
    ext = _extension(name)
    if ext == ".zip":
        return _load_zip_strict(name, data, archive_limits)
    if ext == ".jsonl.gz":
        return archive.load_jsonl(name, archive.gunzip(name, data, archive_limits.max_total_bytes))
    reader = _READERS.get(ext)
    if reader is None and ext != ".jsonl":
        raise UnsupportedFileType(name, SUPPORTED_EXTENSIONS)
    if ext != ".pdf" and (what := sniff_binary(data)):
        raise DocumentLoadError(name, f"the content is {what}, not text: not indexed")
    if reader is None:
        return archive.load_jsonl(name, data)
    if ext == ".pdf":
        return [_load_pdf(name, data, on_page)]
    return [reader(name, data)]


def iter_bytes(
    name: str, data: bytes, *, archive_limits: ArchiveLimits = _DEFAULT_LIMITS,
    on_page: PageCallback | None = None,
) -> Iterator[LoadedDocument | FileFailure]:
    """Like `load_bytes` but never raises: each failure (or bad zip member) is a FileFailure."""
    yield from _iter_loaded(name, lambda: io.BytesIO(data), archive_limits, on_page)


def iter_documents(
    paths: Iterable[Path], *, archive_limits: ArchiveLimits = _DEFAULT_LIMITS,
    on_page: PageCallback | None = None,
) -> Iterator[LoadedDocument | FileFailure]:
    """Yield the documents of every file under `paths`, or a FileFailure for each unreadable one.

    A folder is walked recursively in sorted order, skipping hidden entries and, silently,
    unsupported files; its files' sources are relative to it ("sub/a.md"). A file named directly has
    its file name as source and yields a FileFailure if unsupported or missing. Zip members read
    "a.zip/inner/x.md". A PDF (not one inside an archive) reports each page read to `on_page`.
    """
    for item in iter_files(paths):
        if isinstance(item, FileFailure):
            yield item
        else:
            yield from _iter_file(*item, archive_limits, on_page=on_page)


def iter_files(paths: Iterable[Path]) -> Iterator[tuple[Path, str] | FileFailure]:
    """The files `iter_documents` reads, as (path, source), in its order, or a FileFailure for a
    path that can only fail (missing, unsupported, an unreadable folder): for a reader elsewhere,
    such as a cluster worker given the bytes."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files, errors = _walk(path)
            for error in errors:
                where = Path(error.filename or path).relative_to(path).as_posix()
                yield FileFailure(where, f"cannot read folder ({error.strerror or error})")
            yield from files
        elif path.is_file():
            if _is_supported(path.name):
                yield path, path.name
            else:
                yield FileFailure(path.name, str(UnsupportedFileType(path.name, SUPPORTED_EXTENSIONS)))
        elif path.exists():
            yield FileFailure(path.name, f"{path}: not a regular file")
        else:
            yield FileFailure(path.name or str(path), f"{path}: no such file or directory")


def count_files(paths: Iterable[Path]) -> int:
    """Best-effort number of files `iter_documents` will try (zip members counted one by one): for a
    progress bar. A path that can only fail (missing, unsupported) counts as one."""
    total = 0
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            total += sum(_count_file(file) for file, _ in _walk(path)[0])
        else:
            total += _count_file(path) if _is_supported(path.name) else 1
    return total


# --- files and folders -------------------------------------------------------------------------


def _walk(root: Path) -> tuple[list[tuple[Path, str]], list[OSError]]:
    found: list[tuple[Path, str]] = []
    errors: list[OSError] = []
    for folder, subfolders, names in os.walk(root, onerror=errors.append):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in names:
            path = Path(folder, name)
            if not name.startswith(".") and _is_supported(name) and path.is_file():
                found.append((path, path.relative_to(root).as_posix()))
    found.sort(key=lambda item: item[1].split("/"))
    return found, errors


def _iter_file(
    path: Path, source: str, limits: ArchiveLimits, *, on_page: PageCallback | None = None,
) -> Iterator[LoadedDocument | FileFailure]:
    """A supported file's documents (`iter_files` has refused the others)."""
    if _extension(source) == ".zip":
        # Opened lazily from disk so that a large archive is never held in memory whole.
        yield from _iter_loaded(source, lambda: path.open("rb"), limits)
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield FileFailure(source, f"cannot read file ({exc.strerror or exc})")
        return
    yield from iter_bytes(source, data, archive_limits=limits, on_page=on_page)


def _iter_loaded(
    name: str, open_data: Callable[[], IO[bytes]], limits: ArchiveLimits,
    on_page: PageCallback | None = None,
) -> Iterator[LoadedDocument | FileFailure]:
    try:
        with open_data() as stream:
            if _extension(name) == ".zip":
                yield from _iter_zip(name, stream, limits)
                return
            documents = load_bytes(name, stream.read(), archive_limits=limits, on_page=on_page)
    except (IngestError, OSError) as exc:
        yield FileFailure(name, _reason(exc))
        return
    except Exception as exc:  # the promise is one bad file never stops the others
        reason = f"unexpected error while reading ({type(exc).__name__}: {short_message(exc)})"
        yield FileFailure(name, reason)
        return
    yield from documents


def _iter_zip(
    name: str, stream: IO[bytes], limits: ArchiveLimits
) -> Iterator[LoadedDocument | FileFailure]:
    for item in archive.iter_members(name, stream, limits, _is_supported):
        if isinstance(item, FileFailure):
            yield item
        else:
            yield from iter_bytes(item[0], item[1], archive_limits=limits)


def _load_zip_strict(name: str, data: bytes, limits: ArchiveLimits) -> list[LoadedDocument]:
    documents: list[LoadedDocument] = []
    for item in archive.iter_members(name, io.BytesIO(data), limits, _is_supported,
                                     report_skipped=False):
        if isinstance(item, FileFailure):
            raise DocumentLoadError(item.source, item.reason)
        documents.extend(load_bytes(item[0], item[1], archive_limits=limits))
    return documents


def _count_file(path: Path) -> int:
    if _extension(path.name) != ".zip":
        return 1
    try:
        with path.open("rb") as stream:
            return max(1, archive.count_members(stream))
    except Exception:  # a count is only a hint; iter_documents reports the real problem
        return 1


def _reason(exc: Exception) -> str:
    if isinstance(exc, DocumentLoadError):
        return exc.reason
    return str(exc) if isinstance(exc, IngestError) else f"cannot read file ({exc})"


def _extension(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return ".jsonl.gz" if base.endswith(".jsonl.gz") else os.path.splitext(base)[1]


def _is_supported(name: str) -> bool:
    return _extension(name) in SUPPORTED_EXTENSIONS


# --- formats ------------------------------------------------------------------------------------


def _load_pdf(source: str, data: bytes, on_page: PageCallback | None = None) -> LoadedDocument:
    reader = _open_pdf(source, data)
    pages: list[Page] = []
    warnings: list[str] = []
    first_error = ""
    try:
        count = len(reader.pages)
        for number, page in enumerate(reader.pages, start=1):
            try:
                text = _tidy(page.extract_text()).strip()
            except Exception as exc:  # pypdf raises many types on a broken page; keep the others
                warnings.append(f"page {number}: text extraction failed ({short_message(exc)})")
                first_error = first_error or warnings[-1]
                text = None
            if text:
                pages.append(Page(text, number))
            elif text is not None:
                warnings.append(f"page {number}: no text (needs OCR)")
            if on_page is not None:
                on_page(source, number, count)  # may stop the read by raising DocumentLoadError
    except DocumentLoadError:
        raise
    except Exception as exc:
        raise _corrupt_pdf(source, exc) from exc
    if not pages:
        raise DocumentLoadError(source, _no_pdf_text(count, first_error))
    metadata: dict[str, Any] = {"pages": count}
    if title := _pdf_title(reader):
        metadata["title"] = title
    return LoadedDocument(source, data, pages, "pdf", metadata, warnings, page_count=count)


def _open_pdf(source: str, data: bytes) -> pypdf.PdfReader:
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except DependencyError as exc:  # AES without the cryptography package
        raise DocumentLoadError(source, f"encrypted PDF: {short_message(exc)}") from exc
    except Exception as exc:
        raise _corrupt_pdf(source, exc) from exc
    if encrypted:
        try:
            unlocked = reader.decrypt("") != pypdf.PasswordType.NOT_DECRYPTED
        except Exception as exc:
            reason = f"encrypted PDF: cannot decrypt ({short_message(exc)})"
            raise DocumentLoadError(source, reason) from exc
        if not unlocked:
            raise DocumentLoadError(source, "encrypted PDF: a password is required to read it")
    return reader


def _corrupt_pdf(source: str, exc: Exception) -> DocumentLoadError:
    return DocumentLoadError(source, f"corrupt or unreadable PDF ({short_message(exc)})")


def _no_pdf_text(count: int, first_error: str) -> str:
    if count == 0:
        return "the PDF has no pages"
    if first_error:
        return f"corrupt or unreadable PDF ({first_error})"
    return f"no extractable text in any of {count} pages (scanned document? needs OCR)"


def _pdf_title(reader: pypdf.PdfReader) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a broken /Info dictionary must not cost the document
        return None
    text = str(title).strip() if title is not None else ""
    return text or None


def _load_text(source: str, data: bytes) -> LoadedDocument:
    text, encoding, warnings = _decode(source, data)
    return LoadedDocument(source, data, [Page(text)], "txt", {"encoding": encoding}, warnings)


def _load_markdown(source: str, data: bytes) -> LoadedDocument:
    text, encoding, warnings = _decode(source, data)
    metadata: dict[str, Any] = {"encoding": encoding}
    if title := _markdown_title(text):
        metadata["title"] = title
    return LoadedDocument(source, data, [Page(text)], "md", metadata, warnings)


def _decode(source: str, data: bytes) -> tuple[str, str, list[str]]:
    text, encoding, warnings = _decode_bytes(data)
    text = _tidy(text)
    if not text.strip():
        raise DocumentLoadError(source, "empty file: no text to index")
    return text, encoding, warnings


def _decode_bytes(data: bytes) -> tuple[str, str, list[str]]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding, []
            except UnicodeDecodeError:
                break
    try:
        return data.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError:
        pass
    if _UTF8_MULTIBYTE.search(data) is None:  # no UTF-8 at all: a legacy 8-bit encoding
        try:  # Windows Western first: the commonest, and detection guesses badly on short texts
            return data.decode("cp1252"), "cp1252", ["not UTF-8: decoded as cp1252 (Windows Western)"]
        except UnicodeDecodeError:
            pass
        best = charset_normalizer.from_bytes(data).best()
        if best is not None:
            return str(best), best.encoding, [f"not UTF-8: decoded as {best.encoding} (detected)"]
    # UTF-8 with some bad bytes: keep the valid text, mark the bad bytes, and say so
    text = data.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")
    return text, "utf-8", [f"{replaced} invalid UTF-8 byte sequence(s) replaced with U+FFFD"]


def _markdown_title(text: str) -> str | None:
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
        elif not in_code and (match := _MD_HEADING.fullmatch(line)):
            return match.group(1)
    return None


def _tidy(text: str) -> str:
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    return EXTRA_BLANK_LINES.sub("\n\n", text)


_READERS: dict[str, Callable[[str, bytes], LoadedDocument]] = {
    ".pdf": _load_pdf,
    ".txt": _load_text,
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".html": load_html,
    ".htm": load_html,
}
