"""Which screen serves: a named probe, or the packaged one, on the serving embedder.

The packaged probe (`packaged/offensive`, trained by `ragtune guard train --packaged`) was fitted
on the packaged embedder's vectors; on another embedder it means nothing, so the screen falls back
to the word list alone and says so in its `note`. A probe a person named must fit: it is refused
(ClassifierMismatch) rather than replaced.
"""

from __future__ import annotations

from dataclasses import dataclass

from retrieval.embedder import Embedder
from tuning.errors import ClassifierMismatch
from tuning.probe import ClassifierRecord, ClassifierRegistry

from .screen import AnyScreen, ProbeScreen, Screen, WordListScreen, better_profanity_words
from .training import PACKAGED, PACKAGED_NAME


@dataclass(frozen=True)
class ServedScreen:
    screen: Screen
    record: ClassifierRecord | None  # the probe's record (its metrics); None: the word list
    note: str = ""


def packaged_registry() -> ClassifierRegistry:
    return ClassifierRegistry(PACKAGED)


def open_screen(embedder: Embedder, threshold: float, registry: ClassifierRegistry | None = None,
                name: str = "", wordlist: bool = False) -> ServedScreen:
    """The probe `name` from `registry`, or the packaged probe when `name` is empty, with the word
    list naming the listed words it finds; `wordlist`: a listed word also flags a text."""
    words = WordListScreen(better_profanity_words())
    source = registry if name else packaged_registry()
    label = name or PACKAGED_NAME
    if source is None:
        raise ValueError("a named screen classifier needs the registry that holds it")
    if not name and PACKAGED_NAME not in {r.name for r in source.list()}:
        return ServedScreen(words, None, note="the packaged probe is missing: screening with the "
                            "word list alone (`python -m bench.guard --package` makes it)")
    record = source.get(label)
    try:
        probe = source.load(label, embedder)
    except ClassifierMismatch:
        if name:
            raise
        return ServedScreen(words, None, note=f"the packaged probe was trained on "
                            f"{record.embedder!r}, not {embedder.name!r}: screening with the word "
                            "list alone")
    screen: Screen = ProbeScreen(probe, embedder, threshold, words=words, name=label)
    return ServedScreen(AnyScreen([screen, words]) if wordlist else screen, record)
