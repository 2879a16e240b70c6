"""Domain errors of the tuning layer; translated once, at the edge (api/), to HTTP or CLI errors."""

from __future__ import annotations


class TuningError(Exception):
    """Base class for tuning failures: bad data, bad configs, training and adapter problems."""


class InvalidConfig(TuningError, ValueError):
    """A job, training option or argument a person chose that cannot work (a 422, not a bug).

    Also a ValueError, so callers that catch ValueError for bad arguments keep working."""


class DatasetError(TuningError):
    """A dataset that cannot be trained on, naming the (1-based) line and the field at fault.

    An error that sums up several problems keeps them in `problems`, each a DatasetError.
    """

    def __init__(self, message: str, line: int | None = None, field: str | None = None,
                 problems: list[DatasetError] | None = None) -> None:
        self.message = message
        self.line = line
        self.field = field
        self.problems: list[DatasetError] = problems or []
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ClassifierNotFound(TuningError):
    """A classifier name that is not in the registry."""


class ClassifierMismatch(TuningError):
    """A classifier used with another embedder than the one its head was trained on."""


class DatasetNotFound(TuningError):
    """A dataset id that is not stored."""


class JobNotFound(TuningError):
    """A job id that is not in the queue."""


class JobStateError(TuningError):
    """An action the job's current state does not allow (cancel a finished job, resume a running one)."""
