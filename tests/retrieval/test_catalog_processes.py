"""Two processes on one data dir: opening a catalog never disturbs a create in another process, and
the explicit sweep removes only temporary folders whose creator is gone or that are long stale."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval.catalog import DEAD_OWNER_GRACE_S, STALE_TEMP_S, Catalog
from retrieval.collection import CollectionConfig
from retrieval.owners import current_owner

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    """Another process on this checkout, as a CLI command or a tuning worker would be."""
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _run(code: str) -> str:
    proc = _python(code)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def _dead_pid() -> int:
    proc = _python("pass")
    proc.communicate(timeout=60)  # exited and reaped: the pid is free
    return proc.pid


def _temp(root: Path, owner: str, started: float, kind: str = "new") -> Path:
    path = root / "collections" / f".{kind}-{owner}-{int(started)}-0123abcd"
    path.mkdir(parents=True)
    (path / "collection.json").write_text(CollectionConfig(name="x", embedder="fake",
                                                           dim=8).to_json())
    return path


def test_another_process_opening_and_sweeping_keeps_a_create_in_progress(tmp_path: Path) -> None:
    in_progress = _temp(tmp_path, current_owner(), time.time())  # this process, mid-create
    _run(f"from pathlib import Path\nfrom retrieval.catalog import Catalog\n"
         f"Catalog(Path({str(tmp_path)!r})).sweep_temp()")
    assert in_progress.is_dir(), "a live process's create was removed by another process"
    in_progress.rename(tmp_path / "collections" / "x")
    assert Catalog(tmp_path).get("x").name == "x"


def test_sweep_removes_only_abandoned_temp_folders(tmp_path: Path) -> None:
    now, dead, other_live = time.time(), _dead_pid(), os.getppid()
    keep = [
        _temp(tmp_path, current_owner(), now - 3600),                 # this process, working
        _temp(tmp_path, f"{dead}-0123abcd", now),                     # dead, but within grace
        _temp(tmp_path, f"{other_live}-0123abcd", now - 3600, "deleted"),  # live process
    ]
    gone = [
        _temp(tmp_path, f"{dead}-0123abcd", now - DEAD_OWNER_GRACE_S - 5),
        _temp(tmp_path, f"{dead}-0123abcd", now - DEAD_OWNER_GRACE_S - 5, "deleted"),
        _temp(tmp_path, f"{os.getpid()}-ffffffff", now - DEAD_OWNER_GRACE_S - 5),  # earlier me
        _temp(tmp_path, f"{other_live}-0123abcd", now - STALE_TEMP_S - 5),  # live but stale
    ]
    collections = tmp_path / "collections"
    legacy_old, legacy_new = collections / (".new-" + "a" * 32), collections / (".new-" + "b" * 32)
    legacy_old.mkdir()
    legacy_new.mkdir()
    os.utime(legacy_old, (now - STALE_TEMP_S - 5,) * 2)
    foreign = collections / ".snapshot"
    foreign.mkdir()
    cat = Catalog(tmp_path)
    cat.create(CollectionConfig(name="kb", embedder="fake", dim=8))
    assert all(p.is_dir() for p in [*keep, *gone, legacy_old]), "opening swept something"

    removed = cat.sweep_temp()

    assert removed == sorted(p.name for p in [*gone, legacy_old])
    assert all(p.is_dir() for p in [*keep, legacy_new, foreign]) and cat.names() == ["kb"]
    cat.close()


OPENER = """
import sys, time
from pathlib import Path
from retrieval.catalog import Catalog
root, ready, stop, sweep = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
n = 0
while not stop.exists():
    cat = Catalog(root)
    if sweep == "sweep":
        cat.sweep_temp()
    n += 1
    if n == 1:
        ready.touch()
print(n)
"""


@pytest.mark.parametrize("action", ["open", "sweep"])
def test_creates_never_fail_while_another_process_opens_catalogs(tmp_path: Path,
                                                                 action: str) -> None:
    ready, stop, n = tmp_path / "ready", tmp_path / "stop", 120
    other = _python(OPENER, str(tmp_path), str(ready), str(stop), action)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert other.poll() is None, other.communicate()[1]
        assert time.monotonic() < deadline, "the other process never opened the catalog"
        time.sleep(0.01)
    cat, failures = Catalog(tmp_path), []
    try:
        for i in range(n):
            try:
                cat.create(CollectionConfig(name=f"c{i}", embedder="fake", dim=8,
                                            index_type="numpy"))
            except Exception as exc:  # noqa: BLE001 - counted, shown below
                failures.append(f"c{i}: {type(exc).__name__}: {exc}")
    finally:
        stop.touch()
        out, err = other.communicate(timeout=60)
        cat.close()
    assert other.returncode == 0, err
    assert failures == [], f"{len(failures)} of {n} creates failed: {failures[:3]}"
    assert Catalog(tmp_path).names() == sorted(f"c{i}" for i in range(n))
    assert int(out) > 1, "the other process did not run alongside the creates"
