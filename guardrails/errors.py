"""Domain errors of the guardrails; translated once, at the edge (api/), to HTTP or CLI errors."""

from __future__ import annotations


class ScreenError(ValueError):
    """A screen that cannot be built or run as asked: a missing word list, an unusable probe.

    Also a ValueError, so the CLI reports it as a person's mistake; HTTP maps it to 503."""
