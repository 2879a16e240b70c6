"""The one place CLI commands open `Services`: imported lazily, so `ragtune --help` and commands that
need no models start without loading torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .settings import Settings

if TYPE_CHECKING:
    from .services import Services


def open_services(settings: Settings) -> Services:
    from .services import Services

    return Services(settings)
