"""`ragtune tune recipe grounded-qa --data-only`: SQuAD articles → collection → serving prompts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from api import cli, cli_recipe
from api.services import Services
from generation.grounding import REFUSAL
from tests.fakes import FakeEmbedder
from tests.generation.fakes import ScriptedGenerator
from tuning.datasets import load_samples
from tuning.squad import split_of

FACTS = [("founded", "The society was founded in 1847 by Ada Lovelace.", "In what year was the "
          "society founded?", "1847"),
         ("river", "The river Quell runs 212 kilometres to the sea.", "How long is the river "
          "Quell?", "212 kilometres"),
         ("bridge", "The old bridge has eleven arches of red granite.", "How many arches does the "
          "old bridge have?", "eleven")]


def _squad(path: Path) -> list[str]:
    titles = [t for t in (f"Article_{i}" for i in range(40)) if split_of(t) == "train"][:3]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for n, title in enumerate(titles):
            for m, (_, context, question, answer) in enumerate(FACTS):
                fh.write(json.dumps({"title": title, "context": f"{title} {context}", "qas": [
                    {"id": f"{n}-{m}", "question": f"{title}: {question}", "answers": [answer],
                     "answerable": True}]}) + "\n")
    return titles


@pytest.fixture(autouse=True)
def _wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data dir, small chunks, no retrieval threshold, the fake embedder and a scripted model."""
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAGTUNE_MIN_SCORE", "-1")
    monkeypatch.setenv("RAGTUNE_CHUNK_SIZE", "16")
    monkeypatch.setenv("RAGTUNE_CHUNK_OVERLAP", "2")
    gen = ScriptedGenerator(lambda _: "unused")
    monkeypatch.setattr(cli_recipe, "_services",
                        lambda s: Services(s, embedder=FakeEmbedder(), generator=gen))


def test_data_only_builds_cited_spans_and_refusals_in_the_serving_prompt(tmp_path: Path) -> None:
    titles = _squad(tmp_path / "squad.jsonl.gz")
    out = tmp_path / "gqa.jsonl"
    code = cli.main(["tune", "recipe", "grounded-qa", "--squad", str(tmp_path / "squad.jsonl.gz"),
                     "--articles", "3", "--questions", "9", "--out", str(out), "--data-only"])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert load_samples(out), "the tuning path accepts the file"
    replies = [r["messages"][-1]["content"] for r in records]
    assert REFUSAL in replies and any(r != REFUSAL for r in replies)
    for r in records:
        system, user, reply = (m["content"] for m in r["messages"])
        assert user.startswith("Passages:\n\n[1] (source: ") and "\n\nQuestion: " in user
        if reply != REFUSAL:
            span, marker = reply.rsplit(" [", 1)
            n = int(marker.rstrip("]"))
            shown = user.split(f"[{n}] (source: ", 1)[1].split("\n\n[", 1)[0]
            assert span in shown, "the answer is copied from the passage it cites"
        else:
            answer = FACTS[int(r["meta"]["id"].split("-")[1])][3]
            assert r["meta"]["kind"] == "unanswerable_hard"
            assert answer not in user.split("\n\nQuestion: ")[0], "a refusal shows no answer"
    assert len(titles) == 3


def test_extra_data_is_checked_and_appended(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _squad(tmp_path / "squad.jsonl.gz")
    mine = {"messages": [{"role": "user", "content": "Passages:\n\n[1] x\n\nQuestion: q"},
                         {"role": "assistant", "content": "x [1]"}]}
    extra = tmp_path / "mine.jsonl"
    extra.write_text(json.dumps(mine) + "\n")
    out = tmp_path / "gqa.jsonl"
    argv = ["tune", "recipe", "grounded-qa", "--squad", str(tmp_path / "squad.jsonl.gz"),
            "--articles", "3", "--questions", "6", "--out", str(out), "--data-only"]
    assert cli.main([*argv, "--extra-data", str(extra)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[-1]["messages"] == mine["messages"] and len(records) > 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "no answer"}]}\n')
    out.unlink()
    assert cli.main([*argv, "--extra-data", str(bad)]) == 2
    assert "bad.jsonl" in capsys.readouterr().err and not out.exists()
