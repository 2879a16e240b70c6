"""One file's work is bounded: long texts reach the splitter in windows, counts are remembered, a file
over a bound fails alone, and a long file reports its progress."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_text_splitters import MarkdownHeaderTextSplitter

from ingest.chunking import MD_HEADERS, Chunker, ChunkingConfig
from ingest.pipeline import FileLimits, FileProgress, FileResult, IngestPipeline, ingest_paths
from ingest.sections import WINDOW_CHARS, markdown_sections, windows
from ingest.types import LoadedDocument
from tests.fakes import FakeEmbedder
from tests.helpers import make_collection, text_doc
from tests.ingest.fixtures import make_pdf

PIECES = ["pump", "valve.", "x,", "#", "##", "###", "####", "#####", "```", "~~~", "", "  ", "\t",
          "\u200b", "|", "-", "\n", "\n\n"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="a .\n,é", max_size=400),
       st.integers(min_value=2, max_value=60))
def test_windows_lose_nothing_and_stay_bounded(text: str, size: int) -> None:
    parts = list(windows(text, size))
    assert "".join(parts) == text
    assert all(0 < len(p) <= size for p in parts)


def test_windows_end_at_the_best_boundary_in_their_second_half() -> None:
    text = "one two. three four five six\n\nseven eight nine ten eleven twelve"
    assert list(windows(text, 40)) == ["one two. three four five six\n\n",
                                       "seven eight nine ten eleven twelve"]
    assert list(windows("x" * 10, 4)) == ["xxxx", "xxxx", "xx"]  # no boundary: cut hard


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(PIECES), max_size=6).map(" ".join), max_size=40))
def test_markdown_sections_group_as_langchain_does(lines: list[str]) -> None:
    text = "\n".join(lines)
    theirs = MarkdownHeaderTextSplitter(headers_to_split_on=MD_HEADERS, strip_headers=True)
    expected = [(d.metadata, d.page_content) for d in theirs.split_text(text)]
    assert list(markdown_sections(text)) == expected


def test_a_long_markdown_section_comes_in_parts() -> None:
    text = "# Guide\n\n" + "\n".join(f"line {i} of the pump guide" for i in range(2000))
    parts = list(markdown_sections(text, part_chars=1000))
    assert len(parts) > 40 and all(h == {"h1": "Guide"} for h, _ in parts)
    assert all(len(body) <= 1100 for _, body in parts)
    assert "\n".join(body for _, body in parts) == text.split("\n\n", 1)[1]


class CountingCounter:
    """One token per character; remembers how often and on how long a text it was called."""

    def __init__(self) -> None:
        self.calls = 0
        self.longest = 0

    def __call__(self, text: str) -> int:
        self.calls += 1
        self.longest = max(self.longest, len(text))
        return len(text)


def test_a_huge_single_line_never_reaches_the_splitter_whole() -> None:
    counter = CountingCounter()
    text = " ".join(f"word{i}" for i in range(60_000))  # ~470k characters, no newline
    chunks = Chunker(ChunkingConfig(256, 32), counter).chunk(text_doc("one.txt", text))
    assert counter.longest <= WINDOW_CHARS
    assert all(len(c.text) <= 256 for c in chunks)
    assert chunks[0].text.startswith("word0 ") and chunks[-1].text.endswith("word59999")


def test_a_repeated_character_is_counted_once_not_once_per_character() -> None:
    counter = CountingCounter()
    chunks = Chunker(ChunkingConfig(64, 8), counter).chunk(text_doc("e.txt", "&" * 100_000))
    assert counter.calls < 200  # it was ~200,000 (each character, then again as the overlap slid)
    assert sum(len(c.text) for c in chunks) >= 100_000 and all(len(c.text) <= 64 for c in chunks)


def _run(tmp_path: Path, docs: Iterator[LoadedDocument] | list[LoadedDocument],
         limits: FileLimits, **kw: object) -> tuple[list[FileResult], list[FileProgress]]:
    emb = FakeEmbedder()
    coll = make_collection(tmp_path, emb, chunk_size=16, chunk_overlap=2)
    chunker = Chunker(ChunkingConfig(16, 2), emb.count_tokens)
    progress: list[FileProgress] = []
    report = IngestPipeline(coll, emb, chunker, limits=limits, **kw).run(  # type: ignore[arg-type]
        docs, on_progress=progress.append)
    return report.results, progress


def _words(n: int) -> str:
    return " ".join(f"pump{i} valve{i}." for i in range(n))


def test_a_file_with_too_many_chunks_fails_alone_and_says_why(tmp_path: Path) -> None:
    docs = [text_doc("big.txt", _words(400)), text_doc("small.txt", "Valves stop backflow.")]
    results, _ = _run(tmp_path, docs, FileLimits(max_chunks=20))
    by_source = {r.source: r for r in results}
    assert by_source["small.txt"].status == "added"
    big = by_source["big.txt"]
    assert big.status == "failed" and big.chunks == 0
    assert big.error is not None and "more than 20 chunks" in big.error
    assert "RAGTUNE_MAX_FILE_CHUNKS" in big.error


def test_a_file_that_takes_too_long_to_read_and_chunk_fails_alone(tmp_path: Path) -> None:
    def slow_to_read() -> Iterator[LoadedDocument]:
        time.sleep(0.3)  # as a parser stuck on one file
        yield text_doc("slow.html", "Pumps move water.")
        yield text_doc("quick.txt", "Valves stop backflow.")

    results, _ = _run(tmp_path, slow_to_read(), FileLimits(max_seconds=0.2))
    assert [(r.source, r.status) for r in results] == [("slow.html", "failed"),
                                                      ("quick.txt", "added")]
    assert results[0].error is not None and "took over 0.2 s" in results[0].error


@pytest.mark.parametrize("value", [0, -1, float("nan"), True])
def test_file_limits_refuse_nonsense(value: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        FileLimits(max_seconds=value)


def test_a_long_file_reports_chunks_made_then_embedded(tmp_path: Path) -> None:
    results, progress = _run(tmp_path, [text_doc("long.txt", _words(200))], FileLimits(),
                             batch_chunks=8, progress_every_s=0.0)
    total = results[0].chunks
    assert results[0].status == "added" and total >= 20
    assert {p.source for p in progress} == {"long.txt"}
    made = [p.chunks for p in progress if p.embedded == 0]
    assert made == list(range(1, total + 1))  # every chunk, as it was made
    embedded = [p.embedded for p in progress if p.embedded]
    assert embedded == sorted(embedded) and embedded[-1] == total
    assert all(p.chunks == total for p in progress if p.embedded)


def test_a_pdf_reports_its_pages_read_then_all_of_them_while_embedding(tmp_path: Path) -> None:
    emb = FakeEmbedder()
    coll = make_collection(tmp_path, emb, chunk_size=16, chunk_overlap=2)
    pdf = tmp_path / "book.pdf"
    pdf.write_bytes(make_pdf([f"Page {i} says pumps move water uphill." for i in range(1, 6)]))
    progress: list[FileProgress] = []
    [result] = ingest_paths(coll, emb, [pdf], on_progress=progress.append).results
    assert result.status == "added"
    read = [(p.pages_done, p.pages_total) for p in progress if p.chunks == 0]
    assert read[0] == (1, 5) and read[-1] == (5, 5)  # the first page, and always the last
    assert all((p.pages_done, p.pages_total) == (5, 5) for p in progress if p.chunks)
    assert coll.documents()[0].pages == 5


def _slow_pages(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every PDF page takes `seconds` to extract, as on a page of thousands of drawing operators."""
    import pypdf

    extract = pypdf.PageObject.extract_text

    def slow(self: pypdf.PageObject, *args: object, **kwargs: object) -> str:
        time.sleep(seconds)
        return extract(self, *args, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(pypdf.PageObject, "extract_text", slow)


def test_a_slow_pdf_stops_being_read_at_the_time_bound_not_at_its_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = FakeEmbedder()
    coll = make_collection(tmp_path, emb, chunk_size=16, chunk_overlap=2)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a_slow.pdf").write_bytes(
        make_pdf([f"Page {i} says pumps move water." for i in range(1, 41)]))
    (tmp_path / "in" / "b_quick.txt").write_text("Valves stop backflow.")
    _slow_pages(monkeypatch, 0.05)
    started = time.monotonic()
    report = ingest_paths(coll, emb, [tmp_path / "in"], file_limits=FileLimits(max_seconds=0.3))
    took = time.monotonic() - started
    slow, quick = report.results
    assert slow.source == "a_slow.pdf" and slow.status == "failed" and slow.chunks == 0
    assert slow.error is not None and "RAGTUNE_MAX_FILE_SECONDS" in slow.error
    assert "of 40 pages" in slow.error, "stopped between pages, saying how far it got"
    assert took < 40 * 0.05, f"the 40 pages were read whole ({took:.1f} s)"
    assert (quick.source, quick.status) == ("b_quick.txt", "added")
    assert [d.source for d in coll.documents()] == ["b_quick.txt"]


def test_a_cancel_stops_a_pdf_between_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = FakeEmbedder()
    coll = make_collection(tmp_path, emb, chunk_size=16, chunk_overlap=2)
    pdf = tmp_path / "book.pdf"
    pdf.write_bytes(make_pdf([f"Page {i} says pumps move water." for i in range(1, 41)]))
    _slow_pages(monkeypatch, 0.02)
    progress: list[FileProgress] = []
    asked = time.monotonic()
    report = ingest_paths(coll, emb, [pdf], on_progress=progress.append,
                          should_stop=lambda: time.monotonic() - asked > 0.1)
    assert report.cancelled and coll.documents() == []
    read = max(p.pages_done or 0 for p in progress)
    assert read < 40, "the cancel waited for the whole PDF"
