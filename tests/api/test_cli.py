"""The `ragtune` command line: ingest with progress and per-file errors, search, collections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api import cli, cli_collections
from api.corpus import Corpus
from api.services import Services
from generation.adapter_registry import AdapterRegistry
from generation.generator import HFGenerator, SamplingConfig, generate
from generation.loading import LoadConfig, load_model
from tests.conftest import ImportedModel
from tests.fakes import FakeEmbedder
from tuning.config import TrainConfig


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    embedder = FakeEmbedder()
    monkeypatch.setattr(cli, "_services", lambda s: Services(s, embedder=embedder))
    monkeypatch.setattr(cli, "open_corpus", lambda s: Corpus(s, embedder=embedder))
    monkeypatch.setattr(cli_collections, "open_corpus", lambda s: Corpus(s, embedder=embedder))

    def _run(*argv: str) -> int:
        return cli.main(list(argv))

    return _run


def test_ingest_then_search(run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Leaks\n\nReport a leak by calling the leak line.")
    (docs / "b.txt").write_text("Invoices are paid within thirty days.")
    (docs / "bad.pdf").write_bytes(b"not a pdf")
    assert run("ingest", str(docs), "-c", "kb", "--create", "-q", "--json") == 1, "a failed file exits 1"
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


def test_ingest_into_a_missing_collection_needs_create(run, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "a.txt"
    doc.write_text("The depot opens at six.")
    assert run("ingest", str(doc), "-c", "typo", "-q") == 2
    err = capsys.readouterr().err
    assert "collection 'typo' does not exist" in err and "--create" in err
    assert run("collections") == 0 and "typo" not in capsys.readouterr().out, "nothing was made"
    assert run("ingest", str(doc), "-c", "kb", "--create", "-q", "--json") == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["files"] == [{"source": "a.txt", "status": "added", "doc_id": out["files"][0]["doc_id"],
                             "chunks": 1, "error": None, "warnings": []}]


def test_a_missing_file_is_a_message_not_a_traceback(run, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run("collections", "create", "kb") == 0
    missing = tmp_path / "nope.jsonl"
    assert run("eval", "calibrate", "-c", "kb", "--questions", str(missing)) == 2
    err = capsys.readouterr().err
    assert f"{missing}: no such file or directory" in err and "Traceback" not in err


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("from api import cli\n"
            "def flood(args, settings):\n"
            "    for _ in range(200):\n"
            "        print('x' * 10000)\n"
            "    return 0\n"
            "from api import cli_collections\n"
            "cli_collections.cmd_collections = flood\n"
            "raise SystemExit(cli.main(['collections']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**__import__("os").environ,
                                                         "RAGTUNE_DATA_DIR": str(tmp_path)})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()  # like `| head`
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_unsafe_settings_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAGTUNE_CHUNK_OVERLAP", "999")
    assert cli.main(["collections"]) == 2
    assert "RAGTUNE_CHUNK_OVERLAP" in capsys.readouterr().err
    monkeypatch.delenv("RAGTUNE_CHUNK_OVERLAP")
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path))
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 2  # beyond loopback only with keys
    assert "create an API key first" in capsys.readouterr().err


def _register(data_dir: Path, imported_model: ImportedModel, lora: Path, name: str,
              quantization: str = "none") -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(imported_model.path))
    config = TrainConfig(model=str(imported_model.path), data_path="d.jsonl",
                         output_dir=str(data_dir / "run"), quantization=quantization)
    AdapterRegistry(data_dir / "adapters").register(name, lora, imported_model.path, tokenizer,
                                                    config, "d", {})


def test_adapters_list_activate_deactivate_delete(
        run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        imported_model: ImportedModel, lora_dirs: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAGTUNE_GENERATOR", str(imported_model.path))
    _register(tmp_path / "data", imported_model, lora_dirs[0], "tone")
    assert run("adapters", "activate", "tone") == 0
    assert run("adapters") == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("\tactive")
    assert run("adapters", "delete", "tone") == 2
    assert "deactivate it" in capsys.readouterr().err
    assert run("adapters", "activate", "nope") == 2
    assert "adapter 'nope' is not in" in capsys.readouterr().err
    assert run("adapters", "deactivate") == 0
    assert run("adapters", "delete", "tone") == 0
    assert run("adapters", "merge", "tone", "--out", str(tmp_path / "m")) == 2
    assert not (tmp_path / "m").exists()


def test_adapters_merge_writes_a_model_that_answers_like_base_plus_adapter(
        run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        imported_model: ImportedModel, lora_dirs: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAGTUNE_GENERATOR", str(imported_model.path))
    monkeypatch.setenv("RAGTUNE_QUANTIZATION", "nf4")
    _register(tmp_path / "data", imported_model, lora_dirs[0], "tone", quantization="int4")
    out = tmp_path / "merged"
    assert run("adapters", "merge", "tone", "--out", str(out)) == 0
    err = capsys.readouterr().err
    assert "trained on a int4-quantised base" in err, "the registry's warning"
    assert "serving base is loaded nf4" in err

    ask = [{"role": "user", "content": "Name three colours of the rainbow."}]
    short = SamplingConfig(max_new_tokens=6)
    fp32 = LoadConfig(quantization="fp32", device="cpu")
    served = HFGenerator(load_model(str(imported_model.path), fp32))
    served.add_adapter("tone", lora_dirs[0])
    merged = HFGenerator(load_model(str(out), fp32))
    assert generate(merged, ask, short) == generate(served, ask, short, adapter="tone")
    assert generate(merged, ask, short) != generate(served, ask, short)


def test_ask_in_either_answer_style(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from tests.generation.fakes import ScriptedGenerator

    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAGTUNE_MIN_SCORE", "-1")
    gen = ScriptedGenerator(lambda _: "thirty days [1]")
    embedder = FakeEmbedder()
    monkeypatch.setattr(cli, "_services", lambda s: Services(s, embedder=embedder, generator=gen))
    monkeypatch.setattr(cli, "open_corpus", lambda s: Corpus(s, embedder=embedder))
    monkeypatch.setattr(cli_collections, "open_corpus", lambda s: Corpus(s, embedder=embedder))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "b.txt").write_text("Invoices are paid within thirty days. Receipts are kept.")
    assert cli.main(["ingest", str(docs), "-c", "kb", "--create", "-q"]) == 0
    capsys.readouterr()
    assert cli.main(["ask", "When are invoices paid?", "-c", "kb", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["answer"] == "Invoices are paid within thirty days [1]."
    assert cli.main(["ask", "When are invoices paid?", "-c", "kb", "--answer-style", "span",
                     "--json"]) == 0
    span = json.loads(capsys.readouterr().out)
    assert span["answer"] == "thirty days [1]" and span["citations"][0]["source"] == "b.txt"
    assert cli.main(["ask", "When are invoices paid?", "-c", "kb", "--stream"]) == 0
    streamed = capsys.readouterr().out
    assert streamed.startswith("Invoices are paid within thirty days [1].\n")
    assert "=>" not in streamed and "[1] b.txt" in streamed
    gen.answer_fn = lambda _: "thirty days"  # a draft without its marker
    assert cli.main(["ask", "When are invoices paid?", "-c", "kb", "--stream",
                     "--answer-style", "span"]) == 0
    streamed = capsys.readouterr().out
    assert streamed.startswith("thirty days\n=> thirty days [1]\n"), "the draft, then the answer"
    with pytest.raises(SystemExit) as bad:
        cli.main(["ask", "x", "-c", "kb", "--answer-style", "essay"])
    assert bad.value.code == 2 and "invalid choice" in capsys.readouterr().err
