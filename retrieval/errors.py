"""Domain errors of the retrieval layer; translated to HTTP/CLI errors in api/."""

from __future__ import annotations


class RetrievalError(Exception):
    """Base class for retrieval failures."""


class CollectionNotFound(RetrievalError):
    def __init__(self, name: str, hint: str = "") -> None:
        self.name = name
        super().__init__(f"collection {name!r} does not exist" + (f" ({hint})" if hint else ""))


class CollectionExists(RetrievalError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"collection {name!r} already exists")


class DocumentNotFound(RetrievalError):
    def __init__(self, collection: str, doc_id: str) -> None:
        self.collection = collection
        self.doc_id = doc_id
        super().__init__(f"document {doc_id!r} not found in collection {collection!r}")


class InvalidName(RetrievalError):
    """A collection name that is not a safe directory name."""


class InvalidSearch(RetrievalError, ValueError):
    """Search options a person chose that cannot work: k, the mode, a filter key (a 422, not a
    bug). Also a ValueError, so callers that catch ValueError for bad arguments keep working."""


class InvalidCollectionConfig(RetrievalError, ValueError):
    """Collection settings a person chose that cannot work: chunk size and overlap (a 422, not a
    bug). Also a ValueError, so callers that catch ValueError for bad arguments keep working."""


class EmbedderMismatch(RetrievalError):
    """The collection was built with another embedder (dimension or name differ)."""


class UnknownIndex(RetrievalError, ValueError):
    """An index type that is not registered (retrieval/index.py INDEXES)."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name, self.known = name, known
        super().__init__(f"index {name!r} is not one of {', '.join(known)}")


class RerankerUnavailable(RetrievalError):
    """The configured reranker cannot be loaded (no such directory, not a cross-encoder)."""
