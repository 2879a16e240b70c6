"""`ragtune tune start|list|status|cancel|resume`: bad data exits 2 naming the line; a detached job is
queued, listed and cancelled; without a server, `tune start` runs the job itself to the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api import cli
from tests.conftest import ImportedModel

ROWS = [{"instruction": f"Name item {i}.", "output": f"Item {i}."} for i in range(6)]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_malformed_data_exits_2_naming_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"instruction": "x", "output": ""}) + "\n")
    assert cli.main(["tune", "start", "--name", "x", "--data-path", str(bad), "--model", "m"]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "'output'" in err
    assert cli.main(["tune", "start", "--name", "x", "--data-path", str(bad), "--model", "m",
                     "--lora-r", "0"]) == 2
    assert cli.main(["tune", "list"]) == 0
    assert capsys.readouterr().out == ""


def test_detach_list_status_cancel(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tune", "start", "--name", "a", "--data-path", str(data), "--model", "m",
                     "--lora-r", "8", "--no-peft", "--lr", "1e-5", "--check-phrase", "Item",
                     "--detach"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert cli.main(["tune", "list", "--json"]) == 0
    [job] = json.loads(capsys.readouterr().out)
    assert (job["job_id"], job["state"], job["spec"]["method"]) == (job_id, "queued", "lora")
    assert job["spec"]["train"] == {"lora_r": 8, "peft": False, "lr": 1e-5}
    assert job["spec"]["gate"]["required_phrase"] == "Item"
    assert cli.main(["tune", "cancel", job_id]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert cli.main(["tune", "status", job_id]) == 0
    assert f"{job_id} a (lora): cancelled" in capsys.readouterr().out
    assert cli.main(["tune", "cancel", job_id]) == 2  # already finished
    assert cli.main(["tune", "status", "nope"]) == 2


def test_start_runs_the_job_here_when_no_server_is_running(
        data: Path, imported_model: ImportedModel, data_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    args = ["tune", "start", "--name", "here", "--data-path", str(data), "--model",
            str(imported_model.path), "--max-steps", "1", "--batch-size", "1", "--grad-accum", "1",
            "--lora-r", "2", "--num-threads", "1"]
    assert cli.main([*args, "--model-max-length", "16"]) == 2  # the chat template alone is longer
    assert "within 16 tokens" in capsys.readouterr().err
    code = cli.main([*args, "--model-max-length", "64"])
    out = capsys.readouterr()
    assert code == 0, out
    assert "running it here" in out.err
    assert "succeeded" in out.out and "adapter: here" in out.out
    assert (data_dir / "adapters" / "here" / "adapter_config.json").is_file()
