"""Who owns a piece of work in progress on disk, and whether that owner has provably stopped.

Several processes share one data directory (the server, CLI commands, tuning workers), so a sweep
may only remove what a dead process left. An owner is "<pid>-<boot>", where boot is random per
process: a server restarted in a container often gets its old pid back (pid 1), and the boot tag
tells its leftovers from its own live work.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

BOOT = uuid.uuid4().hex[:8]
OWNER_RE = re.compile(r"^(\d+)-([0-9a-f]{8})\Z")


def current_owner() -> str:
    """This process, as an owner tag to store beside the work it does."""
    return f"{os.getpid()}-{BOOT}"


def pid_alive(pid: int | None) -> bool:
    """Whether process `pid` is running (not exited, not a zombie)."""
    if not pid or pid <= 0:  # 0 and negatives address process groups, never one process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def owner_gone(owner: str | None) -> bool:
    """Whether `owner` (from `current_owner`, in any process) has stopped: its pid is dead, or it
    is this pid in an earlier process. A missing or unreadable tag counts as gone."""
    match = OWNER_RE.match(owner or "")
    if match is None:
        return True
    pid, boot = int(match[1]), match[2]
    if pid == os.getpid():
        return boot != BOOT
    return not pid_alive(pid)
