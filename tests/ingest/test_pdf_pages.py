"""With the real embedder: a sentence from page N of a PDF is found on page N."""

from __future__ import annotations

from pathlib import Path

import pypdf
import pytest

from api.services import Services
from api.settings import Settings
from tests.conftest import shared_data
from tests.ingest.fixtures import make_pdf

PAGES = [
    "The reservoir at Ambersike holds nine billion litres and feeds the northern towns.",
    "Staff may claim mileage at forty-five pence per mile for journeys over ten miles.",
    "Lead pipes in houses built before 1970 should be replaced by the property owner.",
    "The annual general meeting takes place in the second week of March at the town hall.",
]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, real_embedder: object) -> Services:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    return Services(settings, embedder=real_embedder)  # type: ignore[arg-type]


def test_sentence_from_page_n_returns_page_n(services: Services, tmp_path: Path) -> None:
    pdf = tmp_path / "handbook.pdf"
    pdf.write_bytes(make_pdf(PAGES))
    services.create_collection("gen")
    report = services.ingest_paths("gen", [pdf])
    assert report.count("added") == 1
    for n, text in enumerate(PAGES, 1):
        hit = services.search("gen", text, 1)[0]
        assert (hit.source, hit.page) == ("handbook.pdf", n)


def _sentence(page_text: str) -> str | None:
    words = page_text.split()
    return " ".join(words[20:45]) if len(words) > 60 else None


def test_real_pdf_pages_are_found(services: Services) -> None:
    pdf = shared_data("pdfs") / "federal-register-2020-17221.pdf"
    services.create_collection("fr")
    services.ingest_paths("fr", [pdf])
    reader = pypdf.PdfReader(pdf)
    checked = found = 0
    for n, page in enumerate(reader.pages, 1):
        sentence = _sentence(page.extract_text() or "")
        if sentence is None:
            continue
        checked += 1
        hits = services.search("fr", sentence, 3)
        found += hits[0].page == n
    assert checked >= 10
    assert found / checked >= 0.9, f"top-1 page right for {found} of {checked} pages"
