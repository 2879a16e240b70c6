"""The PDF loader: pages numbered with their text, page progress and count, blank and encrypted
pages, corrupt files, and the real PDFs of ../shared/data/pdfs when present."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ingest.errors import DocumentLoadError
from ingest.loaders import load_bytes
from tests.ingest.fixtures import encrypt_pdf, make_pdf
from tests.ingest.test_loaders import only_doc

SHARED_PDFS = Path(__file__).resolve().parents[3] / "shared" / "data" / "pdfs"


def test_pdf_pages_are_numbered_from_one_with_their_text() -> None:
    doc = only_doc("book.pdf", make_pdf(["First page", "Second page", "Third page"], "A Book"))
    assert doc.format == "pdf"
    assert [page.number for page in doc.pages] == [1, 2, 3]
    assert [page.text for page in doc.pages] == ["First page", "Second page", "Third page"]
    assert doc.metadata == {"title": "A Book", "pages": 3}
    assert doc.warnings == []


def test_a_pdf_reports_each_page_read_and_its_page_count() -> None:
    seen: list[tuple[str, int, int]] = []
    [doc] = load_bytes("b.pdf", make_pdf(["One", None, "Three"]),
                       on_page=lambda *a: seen.append(a))
    assert seen == [("b.pdf", 1, 3), ("b.pdf", 2, 3), ("b.pdf", 3, 3)]
    assert doc.page_count == 3 and only_doc("a.txt", b"text").page_count is None


def test_pdf_blank_page_is_skipped_with_a_warning() -> None:
    doc = only_doc("scan.pdf", make_pdf(["Text one", None, "Text three"]))
    assert [page.number for page in doc.pages] == [1, 3]
    assert doc.warnings == ["page 2: no text (needs OCR)"]


def test_pdf_with_only_blank_pages_needs_ocr() -> None:
    with pytest.raises(DocumentLoadError, match="needs OCR") as info:
        load_bytes("scan.pdf", make_pdf([None, None]))
    assert "2 pages" in info.value.reason


def test_encrypted_pdf_with_a_password_is_refused() -> None:
    data = encrypt_pdf(make_pdf(["Secret"]), user_password="hunter2")
    with pytest.raises(DocumentLoadError, match="password"):
        load_bytes("locked.pdf", data)


def test_encrypted_pdf_with_empty_user_password_loads() -> None:
    doc = only_doc("open.pdf", encrypt_pdf(make_pdf(["Readable"]), user_password=""))
    assert doc.pages[0].text == "Readable"


@pytest.mark.parametrize(
    "data", [b"this is not a PDF at all", make_pdf(["Hello", "World"])[:120], b""]
)
def test_corrupt_pdf_is_a_load_error(data: bytes) -> None:
    with pytest.raises(DocumentLoadError):
        load_bytes("broken.pdf", data)


# --- the real PDFs ------------------------------------------------------------------------------


def test_shared_pdfs_load_or_fail_cleanly() -> None:
    if not SHARED_PDFS.is_dir():
        pytest.skip(f"{SHARED_PDFS} not present")
    for path in sorted(SHARED_PDFS.glob("*.pdf")):
        start = time.perf_counter()
        try:
            doc = only_doc(path.name, path.read_bytes())
        except DocumentLoadError as exc:
            print(f"{path.name}: FAILED in {time.perf_counter() - start:.2f}s: {exc.reason}")
            continue
        assert any(page.text.strip() for page in doc.pages)
        took = time.perf_counter() - start
        print(f"{path.name}: {len(doc.pages)}/{doc.metadata['pages']} pages in {took:.2f}s")
