"""`ragtune serve` writes its logs in RAGTUNE_LOG_FORMAT (api/logs.py) instead of uvicorn's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from api import logs


def test_serve_logs_in_the_chosen_format_instead_of_uvicorns(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    import uvicorn

    from api import cli

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    monkeypatch.setattr(logs, "configure", lambda fmt: seen.update(format=fmt))
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAGTUNE_LOG_FORMAT", "plain")
    assert cli.main(["serve"]) == 0
    assert seen["format"] == "plain"
    assert seen["log_config"] is None and seen["access_log"] is False
