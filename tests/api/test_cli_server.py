"""The CLI through a running server (api/cli_remote.py): uvicorn in a thread with the fake embedder.
Served and in-process runs print the same; a server that is down is a fallback when probed, an
error (exit 3) when named; the server's refusals are messages with exit 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from api import cli, cli_collections
from api.app import create_app
from api.corpus import Corpus
from api.keys import KeyStore
from api.services import Services
from api.settings import Settings
from tests.fakes import FakeEmbedder
from tests.helpers import free_port, serving

DOCS = {"pumps.txt": "The blue pump moves water uphill. Pumps need oil every spring.",
        "valves.txt": "The red valve stops the water. Valves are checked every autumn."}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("served") / "data"
    settings = Settings(data_dir=data, chunk_size=64, chunk_overlap=8, rate_limit_per_minute=0,
                        url="local")
    with serving(create_app(settings, Services(settings, embedder=FakeEmbedder()))) as url:
        yield url, data


@pytest.fixture
def run(server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """cli.main on the server's data dir; returns (exit code, stdout, stderr). In-process work
    uses the fake embedder."""
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(server[1]))
    monkeypatch.setenv("RAGTUNE_CHUNK_SIZE", "64")
    monkeypatch.setenv("RAGTUNE_CHUNK_OVERLAP", "8")
    embedder = FakeEmbedder()
    monkeypatch.setattr(cli, "open_corpus", lambda s: Corpus(s, embedder=embedder))
    monkeypatch.setattr(cli_collections, "open_corpus", lambda s: Corpus(s, embedder=embedder))
    monkeypatch.setattr(cli, "_services", lambda s: Services(s, embedder=embedder))

    def _run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    return folder


def _no_local_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(settings: Settings) -> None:
        raise AssertionError("worked in-process although a server answers")

    monkeypatch.setattr(cli, "open_corpus", refuse)
    monkeypatch.setattr(cli_collections, "open_corpus", refuse)
    monkeypatch.setattr(cli, "_services", refuse)


def test_ingest_and_search_through_the_server_match_local(run, server, docs: Path,  # type: ignore[no-untyped-def]
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    url = server[0]
    code, _, err = run("ingest", str(docs), "-c", "kb", "-q", "--server", url)
    assert code == 2 and "collection 'kb' does not exist" in err and "--create" in err

    code, out, _ = run("ingest", str(docs), "-c", "kb", "--create", "-q", "--json", "--server", url)
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and (summary["added"], summary["failed"], summary["documents"]) == (2, 0, 2)
    assert sorted(f["source"] for f in summary["files"]) == sorted(DOCS)
    assert set(summary["files"][0]) == {"source", "status", "doc_id", "chunks", "error", "warnings"}
    assert out.startswith("kb: 2 added, 0 replaced, 0 unchanged, 0 failed; ")

    code, local, _ = run("search", "red valve water", "-c", "kb", "-k", "2", "--json", "--local")
    assert code == 0 and len(json.loads(local)["hits"]) == 2, "the server committed to disk"
    code, local_text, _ = run("search", "red valve water", "-c", "kb", "-k", "2", "--local")

    _no_local_work(monkeypatch)
    code, served, _ = run("search", "red valve water", "-c", "kb", "-k", "2", "--json",
                          "--server", url)
    assert code == 0 and json.loads(served) == json.loads(local)
    monkeypatch.setenv("RAGTUNE_URL", url)
    assert run("search", "red valve water", "-c", "kb", "-k", "2") == (0, local_text, "")


def test_the_default_host_and_port_are_probed_and_a_dead_one_falls_back(  # type: ignore[no-untyped-def]
        run, server, docs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("ingest", str(docs), "-c", "kb", "--create", "-q", "--server", server[0])
    monkeypatch.setenv("RAGTUNE_URL", "auto")
    monkeypatch.setenv("RAGTUNE_PORT", str(free_port()))
    code, local, _ = run("search", "blue pump", "-c", "kb", "-k", "1", "--json")
    assert code == 0 and json.loads(local)["hits"][0]["source"] == "pumps.txt"

    monkeypatch.setenv("RAGTUNE_PORT", server[0].rsplit(":", 1)[1])
    _no_local_work(monkeypatch)
    code, served, _ = run("search", "blue pump", "-c", "kb", "-k", "1", "--json")
    assert code == 0 and json.loads(served) == json.loads(local)


def test_a_named_server_that_does_not_answer_is_an_error(run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    dead = f"http://127.0.0.1:{free_port()}"
    _no_local_work(monkeypatch)
    for argv in (["search", "x", "-c", "kb"], ["ask", "x", "-c", "kb"], ["tune", "list"]):
        code, out, err = run(*argv, "--server", dead)
        assert (code, out) == (3, "")
        assert err.startswith(f"ragtune: error: no ragtune server answers at {dead}")
        assert "--local" in err and "Traceback" not in err
    monkeypatch.setenv("RAGTUNE_URL", dead)
    assert run("search", "x", "-c", "kb")[0] == 3


def test_server_refusals_are_messages(run, server) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run("search", "x", "-c", "nope", "--server", server[0])
    assert code == 2 and "collection 'nope' does not exist" in err
    code, _, err = run("tune", "status", "nope", "--server", server[0])
    assert code == 2 and err.startswith("ragtune: error:") and "404" in err


def test_an_ask_through_the_server_is_the_local_ask(run, server, docs: Path,  # type: ignore[no-untyped-def]
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run("ingest", str(docs), "-c", "kb", "--create", "-q", "--server", server[0])
    # nothing scores above RAGTUNE_MIN_SCORE for this question: refused without the generator
    question = "zebra quantum saxophone"
    code, local, _ = run("ask", question, "-c", "kb", "--json", "--local")
    assert code == 0 and json.loads(local)["refused"] is True
    code, local_text, _ = run("ask", question, "-c", "kb", "--stream", "--local")
    _no_local_work(monkeypatch)
    code, served, _ = run("ask", question, "-c", "kb", "--json", "--server", server[0])
    assert code == 0 and json.loads(served) == json.loads(local)
    assert run("ask", question, "-c", "kb", "--stream", "--server", server[0]) == \
        (0, local_text, "")


def test_tuning_jobs_through_the_server(run, server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    code, local, _ = run("tune", "list", "--json", "--local")
    _no_local_work(monkeypatch)
    code, served, _ = run("tune", "list", "--json", "--server", server[0])
    assert code == 0 and json.loads(served) == json.loads(local)


def test_a_server_that_needs_a_key(run, server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    store = KeyStore.in_data_dir(server[1])
    _, secret = store.create("cli-reader", "read")
    try:
        code, out, err = run("search", "water", "-c", "kb", "--server", server[0])
        assert (code, out) == (2, "")
        assert "needs an API key" in err and "RAGTUNE_API_KEY" in err
        monkeypatch.setenv("RAGTUNE_API_KEY", secret)
        code, out, _ = run("search", "water", "-c", "kb", "-k", "1", "--server", server[0])
        assert code == 0 and out.startswith("1. ")
        monkeypatch.setenv("RAGTUNE_API_KEY", secret[:-2] + "xx")
        assert run("search", "water", "-c", "kb", "--server", server[0])[0] == 2
    finally:
        store.revoke("cli-reader")
