"""The HTTP contract is pinned: the OpenAPI schema the app serves equals the committed snapshot.

A change to a route, a request or a response model shows up here as a diff. When the change is
meant, regenerate the snapshot and commit it with the change:

    RAGTUNE_UPDATE_CONTRACT=1 python -m pytest tests/api/test_contract.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from api.app import create_app
from api.services import Services
from api.settings import Settings
from tests.fakes import FakeEmbedder

SNAPSHOT = Path(__file__).with_name("data") / "openapi.json"


# FastAPI's own error models change with FastAPI, not with ragtune's contract
BUILT_IN = frozenset({"HTTPValidationError", "ValidationError"})


def _paths(schema: dict[str, Any]) -> set[str]:
    return {f"{method.upper()} {path}" for path, ops in schema["paths"].items() for method in ops}


def _models(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema["components"]["schemas"].items() if k not in BUILT_IN}


def test_the_openapi_schema_matches_the_snapshot(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    schema = create_app(settings, Services(settings, embedder=FakeEmbedder())).openapi()
    if os.environ.get("RAGTUNE_UPDATE_CONTRACT"):
        SNAPSHOT.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    pinned = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    added, removed = _paths(schema) - _paths(pinned), _paths(pinned) - _paths(schema)
    assert not added and not removed, f"operations added {sorted(added)}, removed {sorted(removed)}"
    now, then = _models(schema), _models(pinned)
    changed = sorted(name for name in set(now) | set(then) if now.get(name) != then.get(name))
    assert not changed, f"request or response models changed: {changed} (see the module docstring)"
    operations = sorted(f"{m.upper()} {path}" for path, ops in schema["paths"].items()
                        for m, op in ops.items() if op != pinned["paths"][path][m])
    assert not operations, f"operations changed: {operations} (see the module docstring)"
