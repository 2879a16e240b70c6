"""`ragtune tune generate-data` end to end against an OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api import cli, cli_synth
from api.services import Services
from generation.grounding import REFUSAL
from ingest.pipeline import IngestPipeline
from tests.fakes import FakeEmbedder
from tests.helpers import text_doc
from tests.tuning.synth_fakes import KB, SYSTEM, UseCaseReplies, kb_replies, serve_chat
from tuning.datasets import load_samples

PROMPTS = ["How do I bleed a radiator?", "How do I bleed a radiator", "Why does my toilet keep running?",
           "What tools do I need to change a washer?"]


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    made: list[Services] = []

    def make(settings):  # type: ignore[no-untyped-def]
        made.append(Services(settings, embedder=FakeEmbedder()))
        return made[-1]

    monkeypatch.setattr(cli_synth, "_services", make)
    yield make
    for svc in made:
        svc.close()


def test_use_case_writes_chat_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plumbing.jsonl"
    with serve_chat(UseCaseReplies(PROMPTS)) as server:
        code = cli.main(["tune", "generate-data", "--use-case", "a plumbing help desk", "--n", "3",
                         "--temperature", "0.5", "--out", str(out), "--endpoint", server["url"],
                         "--model", "tiny", "--api-key", "k"])
    assert code == 0
    stdout, stderr = capsys.readouterr()
    assert "wrote 3 examples" in stdout and "1 near_duplicate" in stdout
    assert "3/3 examples" in stderr, "progress on stderr"
    samples = load_samples(out)
    assert [s.messages[0]["content"] for s in samples] == [SYSTEM] * 3
    assert {r["body"]["temperature"] for r in server["requests"]} == {0.5}


def test_from_collection_writes_rag_examples(services, tmp_path: Path,  # type: ignore[no-untyped-def]
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from api.settings import Settings

    svc = services(Settings())
    svc.create_collection("kb")
    IngestPipeline.for_collection(svc.collection("kb"), svc.embedder).run(
        [text_doc(src, text) for src, text, _ in KB])
    monkeypatch.setenv("RAGTUNE_OPENAI_MODEL", "tiny")
    out = tmp_path / "rag.jsonl"
    with serve_chat(kb_replies) as server:
        monkeypatch.setenv("RAGTUNE_OPENAI_BASE_URL", server["url"])
        code = cli.main(["tune", "generate-data", "--from-collection", "kb", "--n", "5",
                         "--unanswerable-fraction", "0.4", "--out", str(out),
                         "--answer-suffix", "Sources: [{n}]", "--focus-sentences", "0"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    answers = [r["messages"][2]["content"] for r in rows]
    assert sum(a == REFUSAL for a in answers) == 2
    assert all(a == REFUSAL or "\nSources: [" in a for a in answers)
    assert len(load_samples(out)) == 5
    assert {r["body"]["model"] for r in server["requests"]} == {"tiny"}


def test_bad_input_exits_2(services, tmp_path: Path,  # type: ignore[no-untyped-def]
                           capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "x.jsonl")
    with serve_chat(kb_replies) as server:
        url = server["url"]
        assert cli.main(["tune", "generate-data", "--use-case", "x", "--n", "0", "--out", out,
                         "--endpoint", url]) == 2
        assert "--n 0" in capsys.readouterr().err
        assert cli.main(["tune", "generate-data", "--from-collection", "missing", "--out", out,
                         "--endpoint", url]) == 2
        assert "'missing' does not exist" in capsys.readouterr().err
        assert cli.main(["tune", "generate-data", "--from-collection", "missing", "--out", out,
                         "--answer-suffix", "Sources: {src}", "--endpoint", url]) == 2
        assert "answer suffix" in capsys.readouterr().err
    with serve_chat(kb_replies, status=401) as server:
        assert cli.main(["tune", "generate-data", "--use-case", "x", "--out", out,
                         "--endpoint", server["url"]]) == 2
        assert "HTTP 401" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["tune", "generate-data", "--out", out])
    assert exc.value.code == 2, "one of --use-case / --from-collection is required"
    assert not Path(out).exists()
