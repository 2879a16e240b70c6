"""The one place CLI commands open their wiring, imported lazily so `ragtune --help` and commands
that need no models start without loading torch: `Corpus` for commands that only ingest and
search, `Services` for those that answer or tune."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .settings import Settings

if TYPE_CHECKING:
    from .corpus import Corpus
    from .services import Services


def open_corpus(settings: Settings) -> Corpus:
    from .corpus import Corpus

    return Corpus(settings)


def open_services(settings: Settings) -> Services:
    from .services import Services

    return Services(settings)
