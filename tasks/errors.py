"""Domain errors of the task templates; translated to HTTP/CLI errors in api/."""

from __future__ import annotations


class TaskError(ValueError):
    """Base class: a task request that cannot be run as given."""


class TaskNotFound(TaskError):
    """No template of that name."""


class TaskInputError(TaskError):
    """A mode, input or option a person chose that the template cannot take."""
