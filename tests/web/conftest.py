"""A live ragtune server for the browser tests (uvicorn on a free loopback port, the fake embedder,
a scripted generator that streams word by word and hosts adapters) and headless Chromium driven by
Playwright. Screenshots go to tests/artifacts/web/ (git-ignored)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from api.services import Services
from api.settings import Settings
from generation.adapter_registry import META_FILE, AdapterRecord
from generation.adapters import is_base
from generation.generator import Messages, SamplingConfig
from generation.grounding import REFUSAL
from ingest.pipeline import IngestPipeline
from tests.fakes import FakeEmbedder
from tests.generation.fakes import PIECE, ScriptedGenerator
from tests.helpers import serving, text_doc

CHROMIUM = Path(os.environ.get("RAGTUNE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"
WORD_DELAY_S = 0.12  # slow enough that a test sees the busy state, fast enough to stay quick
DOCS = {
    "pumps.md": "# Pumps\n\nThe blue pump moves water uphill to the Brannock reservoir.",
    "valves.txt": "Valves stop water flowing backwards into the mains.",
}


def _answer(messages: Messages) -> str:
    question = messages[-1]["content"].rsplit("Question:", 1)[-1]
    if "blue pump" in question:
        return "The blue pump moves water uphill [1]."
    return REFUSAL


class SlowAdapterGenerator(ScriptedGenerator):
    """The scripted answer, a word every WORD_DELAY_S; hosts adapters, and an adapter's answers
    start with its name, so base and adapter answers differ visibly."""

    def __init__(self, answer_fn: Callable[[Messages], str]) -> None:
        super().__init__(answer_fn)
        self._adapters: list[str] = []

    @property
    def adapters(self) -> tuple[str, ...]:
        return tuple(self._adapters)

    def add_adapter(self, name: str, path: str | Path) -> None:
        self._adapters.append(name)

    def remove_adapter(self, name: str) -> None:
        self._adapters.remove(name)

    def stream(self, messages: Messages, sampling: SamplingConfig,
               adapter: str | None = None) -> Iterator[str]:
        self.calls.append([dict(m) for m in messages])
        text = self.answer_fn(messages)
        if not is_base(adapter) and text != REFUSAL:
            text = f"{adapter.capitalize()} says: {text}"  # type: ignore[union-attr]
        for word in PIECE.findall(text)[: sampling.max_new_tokens]:
            time.sleep(WORD_DELAY_S)
            yield word


@dataclass
class Live:
    url: str
    services: Services


def _register_adapter(services: Services, name: str) -> None:
    """A registry entry the scripted generator can 'load' (it reads no weights)."""
    folder = services.adapters.root / name
    folder.mkdir(parents=True)
    record = AdapterRecord(name=name, path=folder, method="lora", base_model="scripted",
                           base_hash="0" * 64, tokenizer_fingerprint="scripted",
                           dataset_hash="d" * 64, config={"lora_r": 8},
                           metrics={"train_loss": 0.4},
                           created_at=datetime.now(UTC).isoformat())
    (folder / META_FILE).write_text(json.dumps(record.to_json()))


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("web") / "data", min_score=0.2,
                        chunk_size=64, chunk_overlap=8, generator="scripted",
                        answer_style="span", rate_limit_per_minute=0, default_adapter="")
    services = Services(settings, embedder=FakeEmbedder(),
                        generator=SlowAdapterGenerator(_answer))
    services.create_collection("kb")
    IngestPipeline.for_collection(services.collection("kb"), services.embedder).run(
        [text_doc(s, t, "md" if s.endswith(".md") else "txt") for s, t in DOCS.items()])
    _register_adapter(services, "terse")
    # the scripted model has no weights to check an adapter against, nor a tokenizer to check a
    # dataset with; tuning jobs are stepped by the tests instead of a worker process
    services.serving.check_servable = services.adapters.get  # type: ignore[method-assign]
    services.tuning.check = lambda spec, names=None: None  # type: ignore[method-assign]
    services.start_tuning_runner = lambda: None  # type: ignore[method-assign]
    with serving(create_app(settings, services), graceful_shutdown_s=5) as url:
        yield Live(url, services)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `apt-get install -y chromium` (make install does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright "
                                   "(in the dev extra)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM),
                                      args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, live: Live, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context at desktop width, with console errors collected and failing the
    test; a screenshot of the final state is kept as an artifact either way."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(10_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("dialog", lambda d: d.accept())
    pg.goto(live.url + "/")
    yield pg
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}-final.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(pg: Any, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
