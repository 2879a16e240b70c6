"""The `ragtune` command line: ingest with progress and per-file errors, search, collections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api import cli
from api.services import Services
from api.settings import Settings
from tests.fakes import FakeEmbedder


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    embedder = FakeEmbedder()
    monkeypatch.setattr(cli, "_services", lambda s: Services(s, embedder=embedder))

    def _run(*argv: str) -> int:
        return cli.main(list(argv))

    return _run


def test_ingest_then_search(run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Leaks\n\nReport a leak by calling the leak line.")
    (docs / "b.txt").write_text("Invoices are paid within thirty days.")
    (docs / "bad.pdf").write_bytes(b"not a pdf")
    assert run("ingest", str(docs), "-c", "kb", "-q", "--json") == 1, "a failed file exits 1"
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["added"] == 2 and summary["failed"] == 1
    assert "bad.pdf" in err

    assert run("search", "report a leak", "-c", "kb", "-k", "1", "--json") == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["source"] == "a.md"

    assert run("collections") == 0
    assert "kb\t2 documents" in capsys.readouterr().out


def test_bad_input_is_a_message_and_exit_2(run, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert run("search", "x", "-c", "missing") == 2
    assert "collection 'missing' does not exist" in capsys.readouterr().err
    assert run("collections", "create", "bad/name") == 2
    assert "collection name" in capsys.readouterr().err
    assert run("collections", "create") == 2


def test_unsafe_settings_refused(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAGTUNE_CHUNK_OVERLAP", "999")
    assert cli.main(["collections"]) == 2
    assert "RAGTUNE_CHUNK_OVERLAP" in capsys.readouterr().err
    monkeypatch.delenv("RAGTUNE_CHUNK_OVERLAP")
    with pytest.raises(ValueError, match="RAGTUNE_ALLOW_REMOTE"):
        Settings(host="0.0.0.0")
