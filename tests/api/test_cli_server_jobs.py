"""`tune start|resume` and `eval answers` through a running server (api/cli_remote.py): the data is
uploaded and the job queued, resumed or run there, with no models loaded in the CLI. The server's
tuning runner is not started, so a queued job stays queued and nothing trains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from api import cli, cli_eval, cli_tune
from api.app import create_app
from api.services import Services
from api.settings import Settings
from tests.fakes import FakeEmbedder
from tests.helpers import serving

ROWS = [{"instruction": f"Name item {i}.", "output": f"Item {i}."} for i in range(6)]
# nothing scores above RAGTUNE_MIN_SCORE for these: refused without the generator
GOLD = [{"id": "q1", "question": "zebra quantum saxophone", "answerable": False},
        {"id": "q2", "question": "quasar walrus bassoon", "answerable": True, "answers": ["oil"]}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("served") / "data"
    model = tmp_path_factory.mktemp("model") / "absent"  # planned on, never loaded
    settings = Settings(data_dir=data, chunk_size=64, chunk_overlap=8, rate_limit_per_minute=0,
                        url="local", generator=str(model))
    services = Services(settings, embedder=FakeEmbedder())
    services.start_tuning_runner = lambda: None  # type: ignore[method-assign]
    with serving(create_app(settings, services)) as url:
        yield url, data


@pytest.fixture
def run(server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """cli.main on the server's data dir, refusing in-process services: (exit code, out, err)."""
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(server[1]))

    def refuse(settings: Settings) -> None:
        raise AssertionError("worked in-process although a server answers")

    for module, name in ((cli, "_services"), (cli, "open_corpus"), (cli_tune, "_services"),
                         (cli_eval, "open_services"), (cli_eval, "open_corpus")):
        monkeypatch.setattr(module, name, refuse)

    def _run(*argv: str) -> tuple[int, str, str]:
        code = cli.main([*argv, "--server", server[0]])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _job(run, job_id: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    code, out, err = run("tune", "status", job_id, "--json")
    assert code == 0, err
    job: dict[str, object] = json.loads(out)
    return job


def test_tune_start_cancel_and_resume_through_the_server(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = _jsonl(tmp_path / "d.jsonl", ROWS)
    bad = _jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"instruction": "x", "output": ""}])
    code, _, err = run("tune", "start", "--name", "srv", "--data-path", str(bad), "--detach")
    assert code == 2 and "line 2" in err
    code, _, err = run("tune", "start", "--name", "srv", "--data-path", str(tmp_path / "no.jsonl"))
    assert code == 2 and "no such file" in err

    code, out, err = run("tune", "start", "--name", "srv", "--data-path", str(data), "--lora-r", "8",
                         "--check-phrase", "Item", "--detach")
    assert code == 0 and "queued tuning job" in err, err
    job_id = out.strip()
    job = _job(run, job_id)
    assert (job["name"], job["state"]) == ("srv", "queued")
    assert job["spec"]["train"] == {"lora_r": 8}  # type: ignore[index]
    assert job["spec"]["gate"]["required_phrase"] == "Item"  # type: ignore[index]

    code, _, err = run("tune", "start", "--resume", "--name", "srv", "--data-path", str(data))
    assert code == 2 and "no interrupted, failed or cancelled job named 'srv'" in err
    assert run("tune", "cancel", job_id)[0] == 0 and _job(run, job_id)["state"] == "cancelled"
    assert run("tune", "resume", job_id, "--detach")[:2] == (0, job_id + "\n")
    assert _job(run, job_id)["state"] == "queued"
    assert run("tune", "cancel", job_id)[0] == 0
    code, out, _ = run("tune", "start", "--resume", "--name", "srv", "--data-path", str(data),
                       "--detach")
    assert (code, out.strip(), _job(run, job_id)["state"]) == (0, job_id, "queued")
    run("tune", "cancel", job_id)


def test_eval_answers_through_the_server_is_the_local_eval(  # type: ignore[no-untyped-def]
        run, server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pumps.txt").write_text("The blue pump moves water uphill. Pumps need oil every spring.")
    assert run("ingest", str(docs), "-c", "evalkb", "--create", "-q")[0] == 0
    questions = _jsonl(tmp_path / "gold.jsonl", GOLD)  # type: ignore[arg-type]
    served_out = tmp_path / "served.json"
    code, out, err = run("eval", "answers", "-c", "evalkb", "--questions", str(questions),
                         "--out", str(served_out))
    assert code == 0 and "refusal_rate" in out and "evaluation " in err, err
    served = json.loads(served_out.read_text())
    assert served["summary"]["questions"] == 2 and served["summary"]["refusal_rate"] == 1.0
    assert [q["refused"] for q in served["questions"]] == [True, True]

    monkeypatch.setattr(cli_eval, "open_services",
                        lambda s: Services(s, embedder=FakeEmbedder()))
    local_out = tmp_path / "local.json"
    assert cli.main(["eval", "answers", "-c", "evalkb", "--questions", str(questions),
                     "--out", str(local_out), "--local"]) == 0
    local = json.loads(local_out.read_text())
    drop = ("latency_p50_s", "latency_s")
    assert {k: v for k, v in served["summary"].items() if k not in drop} == \
        {k: v for k, v in local["summary"].items() if k not in drop}
    assert [{k: v for k, v in q.items() if k not in drop} for q in served["questions"]] == \
        [{k: v for k, v in q.items() if k not in drop} for q in local["questions"]]

    code, _, err = run("eval", "answers", "-c", "nope", "--questions", str(questions))
    assert code == 2 and "collection 'nope' does not exist" in err
