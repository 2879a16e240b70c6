"""`ragtune classifiers train | list | predict | delete`, and bad data as a message with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api import cli, cli_classifiers
from api.services import Services
from tests.fakes import FakeEmbedder


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    embedder = FakeEmbedder()
    monkeypatch.setattr(cli_classifiers, "_services", lambda s: Services(s, embedder=embedder))
    return lambda *argv: cli.main(list(argv))


def test_train_list_predict_delete(run, tmp_path: Path,  # type: ignore[no-untyped-def]
                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "reviews.csv"
    rows = ["review,stars"] + [f'"great lovely stay number {i}",good' for i in range(6)] + \
        [f'"awful dirty stay number {i}",bad' for i in range(6)]
    data.write_text("\n".join(rows) + "\n")
    assert run("classifiers", "train", "reviews", "--data-path", str(data), "--text-column",
               "review", "--label-column", "stars", "--val-fraction", "0.25") == 0
    out = capsys.readouterr().out
    metrics = json.loads(out[out.index("{"):])
    assert metrics["n_train"] == 9 and metrics["n_val"] == 3

    assert run("classifiers", "list") == 0
    assert capsys.readouterr().out.startswith("reviews\tbad, good\tfake-bow")
    assert run("classifiers", "predict", "reviews", "great lovely stay", "awful dirty stay") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["good", "bad"]
    assert run("classifiers", "delete", "reviews") == 0
    assert run("classifiers", "predict", "reviews", "x") == 2
    assert "classifier 'reviews' not found" in capsys.readouterr().err


def test_bad_data_exits_2_naming_the_line(run, tmp_path: Path,  # type: ignore[no-untyped-def]
                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "fine", "label": "a"}\n{"text": "", "label": "b"}\n')
    assert run("classifiers", "train", "x", "--data-path", str(data)) == 2
    assert "line 2, field 'text'" in capsys.readouterr().err
