"""Domain errors raised while reading and ingesting files; translated to HTTP/CLI errors in api/."""

from __future__ import annotations


class IngestError(Exception):
    """Base class for ingest failures."""


class UnsupportedFileType(IngestError):
    """The file's extension is not one ragtune can read."""

    def __init__(self, source: str, supported: tuple[str, ...]) -> None:
        self.source = source
        self.supported = supported
        super().__init__(
            f"{source!r}: unsupported file type; supported types are {', '.join(supported)}"
        )


class DocumentLoadError(IngestError):
    """A supported file that could not be read (corrupt, encrypted, no text, undecodable...)."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class ArchiveError(DocumentLoadError):
    """A .zip that breaks the archive rules (too many entries, too large, unsafe paths)."""
