"""`ragtune tasks list | run | eval | probe` with a scripted generator and the fake embedder; an
unknown task or an input a template cannot take is a message and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api import cli, cli_tasks
from api.services import Services
from tests.fakes import FakeEmbedder
from tests.generation.fakes import ScriptedGenerator


@pytest.fixture
def gen() -> ScriptedGenerator:
    return ScriptedGenerator(lambda m: "Answer: negative" if "cold" in m[-1]["content"] else "positive!")


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gen: ScriptedGenerator):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    embedder = FakeEmbedder(dim=256)
    monkeypatch.setattr(cli_tasks, "_services", lambda s: Services(s, embedder=embedder, generator=gen))
    return lambda *argv: cli.main(list(argv))


def test_list_names_every_task_with_its_modes(run, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert run("tasks", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["qa", "sentiment", "translation", "coreference",
                                                       "parsing", "summarisation"]
    assert "zero_shot, few_shot, cot, linear_probe" in lines[1] and "linear_probe" not in lines[0]


def test_run_prints_the_output(run, gen: ScriptedGenerator,  # type: ignore[no-untyped-def]
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run("tasks", "run", "sentiment", "The soup was cold.", "--mode", "cot") == 0
    assert capsys.readouterr().out.strip() == "negative"
    assert run("tasks", "run", "sentiment", "Lovely!", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["output"] == "positive" and out["reply"] == "positive!" and out["mode"] == "zero_shot"
    assert len(gen.calls) == 2


def test_eval_scores_each_mode(run, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert run("tasks", "eval", "sentiment", "--mode", "zero_shot", "--mode", "cot", "--limit", "4") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[1] for line in lines] == ["zero_shot", "cot"]
    assert all("\tn=4\t" in line for line in lines)


def test_probe_is_saved_and_answers_runs(run, gen: ScriptedGenerator,  # type: ignore[no-untyped-def]
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run("tasks", "probe", "sentiment", "--save-as", "mood") == 0
    assert "saved classifier mood: labels negative, positive" in capsys.readouterr().out
    assert run("tasks", "run", "sentiment", "Absolutely delighted with the service today.",
               "--classifier", "mood") == 0
    assert capsys.readouterr().out.strip() == "positive" and not gen.calls  # a training example
    assert run("tasks", "probe", "sentiment", "--save-as", "mood") == 2  # exists: --overwrite


def test_bad_requests_exit_2(run, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert run("tasks", "run", "poetry", "x") == 2
    assert "task 'poetry' not found" in capsys.readouterr().err
    assert run("tasks", "run", "qa", "Who?") == 2
    assert "needs a passage" in capsys.readouterr().err
    assert run("tasks", "probe", "qa") == 2
    assert "not a classification" in capsys.readouterr().err
