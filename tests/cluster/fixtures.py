"""Tiny corpora and embedders for the cluster tests."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from api.services import Services
from api.settings import Settings
from generation.grounding import REFUSAL
from tests.fakes import FakeEmbedder
from tests.generation.fakes import ScriptedGenerator

TOPICS = ["leaks", "invoices", "holidays", "passwords", "printers", "parking", "badges", "meetings"]


def make_corpus(root: Path, files: int = 12) -> Path:
    """Markdown and text files of a few chunks each, a JSONL, a zip and a file that fails."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        topic = TOPICS[i % len(TOPICS)]
        body = "\n\n".join(f"## {topic} part {p}\n\n" + " ".join(
            f"The {topic} rule {i}.{p}.{w} says to file form {i * 100 + p * 10 + w}." for w in range(12))
            for p in range(3))
        name = f"doc{i:02d}.md" if i % 2 else f"doc{i:02d}.txt"
        (root / name).write_text(f"# {topic} {i}\n\n{body}\n")
    lines = [json.dumps({"_id": f"r{j}", "title": f"record {j}", "text": f"Record {j} is about {t}."})
             for j, t in enumerate(TOPICS)]
    (root / "records.jsonl").write_text("\n".join(lines) + "\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("inner/a.md", "# Zipped\n\nBadges are renewed every year at the front desk.")
        zf.writestr("inner/b.txt", "Parking passes are handed out on Mondays.")
    (root / "bundle.zip").write_bytes(buf.getvalue())
    (root / "broken.pdf").write_bytes(b"not a pdf at all")
    return root


class SlowEmbedder(FakeEmbedder):
    """The fake embedder, slowed down so that a worker can be killed while it embeds."""

    def __init__(self, seconds_per_batch: float = 0.3) -> None:
        super().__init__()
        self.seconds_per_batch = seconds_per_batch

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        time.sleep(self.seconds_per_batch)
        return super().embed_batch(texts)


def _answer(messages: list[dict[str, str]]) -> str:
    question = messages[-1]["content"].rsplit("Question:", 1)[-1]
    return "Badges are renewed every year [1]." if "badge" in question.lower() else REFUSAL


def fake_services(settings: Settings) -> Services:
    """A replica's Services with the fake embedder and a scripted generator (no model loads)."""
    return Services(settings, embedder=FakeEmbedder(), generator=ScriptedGenerator(_answer))
