"""Loaders: text, Markdown, HTML, JSONL and archive formats, the archive rules and folder walking
(PDF: test_pdf_loader.py)."""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import stat
import zipfile
from pathlib import Path

import pytest

from ingest.archive import read_at_most
from ingest.errors import ArchiveError, DocumentLoadError, UnsupportedFileType
from ingest.loaders import (
    SUPPORTED_EXTENSIONS,
    ArchiveLimits,
    check_supported,
    count_files,
    iter_bytes,
    iter_documents,
    load_bytes,
)
from ingest.types import FileFailure, LoadedDocument
from tests.ingest.fixtures import make_zip

# --- builders ----------------------------------------------------------------------------------


def only_doc(name: str, data: bytes) -> LoadedDocument:
    docs = load_bytes(name, data)
    assert len(docs) == 1
    return docs[0]


def failures(items: list[LoadedDocument | FileFailure]) -> list[FileFailure]:
    return [item for item in items if isinstance(item, FileFailure)]


def documents(items: list[LoadedDocument | FileFailure]) -> list[LoadedDocument]:
    return [item for item in items if isinstance(item, LoadedDocument)]


# --- extensions and limits ---------------------------------------------------------------------


def test_check_supported_is_case_insensitive_and_knows_jsonl_gz() -> None:
    for name in ("a.PDF", "b.Md", "dir/c.jsonl.gz", "d.HTM"):
        check_supported(name)
    with pytest.raises(UnsupportedFileType) as info:
        check_supported("photo.png")
    assert info.value.supported == SUPPORTED_EXTENSIONS
    with pytest.raises(UnsupportedFileType):
        check_supported("data.gz")


@pytest.mark.parametrize("field", ["max_entries", "max_total_bytes"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_archive_limits_refuse_non_positive(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ArchiveLimits(**{field: value})  # type: ignore[arg-type]


# --- text and Markdown ---------------------------------------------------------------------------

FRENCH = (
    "Ce matin, le café était très chaud et la crème brûlée délicieuse. "
    "Nous avons parlé de la réunion, des élèves et de l’été prochain. "
    "Le garçon naïf a reçu une lettre — très « belle » — de sa sœur à Noël. "
) * 5


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("héllo wörld".encode(), "utf-8"),
        ("héllo wörld".encode("utf-8-sig"), "utf-8-sig"),
        ("héllo wörld".encode("utf-16"), "utf-16"),
        (FRENCH.encode("cp1252"), "cp1252"),
    ],
)
def test_text_encodings_are_detected(data: bytes, encoding: str) -> None:
    doc = only_doc("note.txt", data)
    expected = FRENCH if encoding == "cp1252" else "héllo wörld"
    assert doc.pages[0].text == expected
    assert doc.pages[0].number is None
    assert doc.metadata["encoding"] == encoding
    legacy = ["not UTF-8: decoded as cp1252 (Windows Western)"]
    assert doc.warnings == (legacy if encoding == "cp1252" else [])


def test_utf8_with_bad_bytes_keeps_its_valid_text_and_says_so() -> None:
    data = "Größe: 5 m².".encode() + b"\xff\xfe" + " Ende über".encode()
    doc = only_doc("mixed.txt", data)
    assert doc.pages[0].text == "Größe: 5 m².\ufffd\ufffd Ende über"  # not cp1250 mojibake
    assert doc.metadata["encoding"] == "utf-8"
    assert doc.warnings == ["2 invalid UTF-8 byte sequence(s) replaced with U+FFFD"]


@pytest.mark.parametrize(("name", "data", "what"), [
    ("prog.txt", b"\x7fELF\x02\x01\x01" + bytes(60), "an ELF executable"),
    ("notes.md", b"PK\x03\x04\x14\x00" + bytes(40), "a ZIP archive"),
    ("page.html", b"%PDF-1.7\n...", "a PDF"),
    ("rows.jsonl", b"\x1f\x8b\x08\x00", "gzip data"),
    ("garbage.txt", b"readable start " + random.Random(0).randbytes(3000), "binary data (NUL bytes)"),
])
def test_binary_content_named_as_text_is_not_indexed(name: str, data: bytes, what: str) -> None:
    with pytest.raises(DocumentLoadError, match=re.escape(f"the content is {what}, not text")):
        load_bytes(name, data)


@pytest.mark.parametrize("data", [b"", b"  \n\t \r\n"])
def test_empty_text_is_a_load_error(data: bytes) -> None:
    with pytest.raises(DocumentLoadError, match="empty file"):
        load_bytes("empty.txt", data)


def test_markdown_title_is_the_first_heading_outside_code() -> None:
    text = "Intro line\n\n```\n# not a title\n```\n\n# Real Title\n\n## Section\nBody\n"
    doc = only_doc("guide.markdown", text.encode())
    assert doc.format == "md"
    assert doc.metadata["title"] == "Real Title"
    assert doc.pages[0].text == text
    assert "title" not in only_doc("plain.md", b"no heading here").metadata


# --- HTML ---------------------------------------------------------------------------------------

PAGE = b"""<!DOCTYPE html><html><head><title>My Page</title>
<style>.secret-style { color: red }</style><script>var secretScript = 1;</script></head>
<body><h1>Heading</h1><p>Hello <b>world</b>, inline.</p><noscript>enable javascript</noscript>
<template>template text</template><!-- a comment -->
<table><tr><th>Name</th><th>Age</th></tr><tr><td>Alice</td><td>30</td></tr></table>
<ul><li>one</li><li>two</li></ul>line<br>break</body></html>"""


def test_html_keeps_visible_text_only() -> None:
    doc = only_doc("page.html", PAGE)
    text = doc.pages[0].text
    assert doc.format == "html"
    assert doc.metadata["title"] == "My Page"
    for hidden in ("secret", "enable javascript", "template text", "a comment"):
        assert hidden not in text
    assert "Hello world, inline." in text
    assert "Name Age" in text and "Alice 30" in text
    lines = text.splitlines()
    assert "Heading" in lines and "one" in lines and "line" in lines and "break" in lines


def test_html_without_visible_text_is_a_load_error() -> None:
    with pytest.raises(DocumentLoadError):
        load_bytes("blank.htm", b"<html><head><title>T</title><script>x()</script></head></html>")


# --- zip ----------------------------------------------------------------------------------------


def test_zip_members_are_loaded_with_archive_sources() -> None:
    data = make_zip(
        {"x.md": b"# X\nbody", "inner/y.txt": b"why", "skip.png": b"\x89PNG", "docs/": b""}
    )
    items = list(iter_bytes("a.zip", data))
    assert [doc.source for doc in documents(items)] == ["a.zip/x.md", "a.zip/inner/y.txt"]
    assert [(f.source, f.reason) for f in failures(items)] == [
        ("a.zip/skip.png", "unsupported file type: skipped")]  # reported, not dropped silently
    assert [doc.source for doc in load_bytes("a.zip", data)] == ["a.zip/x.md", "a.zip/inner/y.txt"]


def test_a_symlink_member_is_reported_not_read_as_text() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        link = zipfile.ZipInfo("passwd.txt")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("ok.txt", "fine text")
    items = list(iter_bytes("l.zip", buf.getvalue()))
    assert [doc.source for doc in documents(items)] == ["l.zip/ok.txt"]
    assert [(f.source, f.reason) for f in failures(items)] == [
        ("l.zip/passwd.txt", "a symbolic link: skipped (links are not followed)")]


def test_an_empty_archive_fails_with_a_reason() -> None:
    items = list(iter_bytes("e.zip", make_zip({"docs/": b"", ".hidden": b"x"})))
    assert [(f.source, f.reason) for f in failures(items)] == [
        ("e.zip", "the archive holds no files")]


def test_zip_bad_member_does_not_stop_the_others() -> None:
    data = make_zip({"bad.pdf": b"garbage", "nested.zip": b"PK", "good.txt": b"fine"})
    items = list(iter_bytes("a.zip", data))
    assert [doc.source for doc in documents(items)] == ["a.zip/good.txt"]
    reasons = {failure.source: failure.reason for failure in failures(items)}
    assert set(reasons) == {"a.zip/bad.pdf", "a.zip/nested.zip"}
    assert reasons["a.zip/nested.zip"] == "nested archives are not supported"
    with pytest.raises(DocumentLoadError):
        load_bytes("a.zip", data)


@pytest.mark.parametrize(
    "entry", ["../evil.md", "docs/../../evil.md", "/etc/evil.md", "\\evil.md", "C:\\evil.md"]
)
def test_zip_with_unsafe_entry_is_rejected_whole(entry: str) -> None:
    data = make_zip({"ok.md": b"fine", entry: b"evil"})
    with pytest.raises(ArchiveError, match="unsafe entry"):
        load_bytes("a.zip", data)
    items = list(iter_bytes("a.zip", data))
    assert len(items) == 1 and isinstance(items[0], FileFailure)
    assert entry in items[0].reason or repr(entry)[1:-1] in items[0].reason


def test_zip_with_too_many_entries_is_rejected() -> None:
    data = make_zip({f"f{i}.txt": b"x" for i in range(5)})
    with pytest.raises(ArchiveError, match="5 entries, more than the limit of 3"):
        load_bytes("a.zip", data, archive_limits=ArchiveLimits(max_entries=3))


def test_zip_over_the_declared_byte_limit_is_rejected() -> None:
    data = make_zip({"a.txt": b"a" * 80, "b.txt": b"b" * 80})
    with pytest.raises(ArchiveError, match="160 bytes, more than the limit of 100"):
        load_bytes("a.zip", data, archive_limits=ArchiveLimits(max_total_bytes=100))


def test_zip_bomb_lying_about_its_size_is_not_expanded() -> None:
    data = bytearray(make_zip({"big.txt": b"a" * 2_000_000}))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature) + offset
        data[at : at + 4] = (10).to_bytes(4, "little")  # declare 10 bytes
    items = list(iter_bytes("bomb.zip", bytes(data), archive_limits=ArchiveLimits(1000, 100_000)))
    assert documents(items) == []
    assert [failure.source for failure in failures(items)] in (["bomb.zip/big.txt"], ["bomb.zip"])


def test_read_at_most_stops_just_past_the_limit() -> None:
    class Endless(io.BufferedIOBase):
        def read(self, size: int | None = -1) -> bytes:
            assert size is not None and 0 < size <= 1 << 16  # always bounded chunks
            return b"z" * size

    assert len(read_at_most(Endless(), 200_000)) == 200_001
    assert read_at_most(io.BytesIO(b"short"), 10) == b"short"


def test_corrupt_zip_is_a_failure() -> None:
    items = list(iter_bytes("a.zip", b"PK\x03\x04 definitely not a zip"))
    assert len(items) == 1 and isinstance(items[0], FileFailure)
    assert "corrupt" in items[0].reason


# --- JSONL --------------------------------------------------------------------------------------

CORPUS: list[dict[str, object]] = [
    {"_id": "d1", "title": "First", "text": "Alpha text."},
    {"id": 2, "text": "Beta text."},
    {"_id": "d3", "title": "", "text": "Gamma text."},
]


def corpus_bytes(records: list[dict[str, object]]) -> bytes:
    return "\n".join(json.dumps(record) for record in records).encode() + b"\n"


def test_jsonl_gives_one_document_per_line() -> None:
    data = corpus_bytes(CORPUS)
    for name, payload in (("corpus.jsonl", data), ("corpus.jsonl.gz", gzip.compress(data))):
        docs = load_bytes(name, payload)
        assert [doc.source for doc in docs] == [f"{name}#d1", f"{name}#2", f"{name}#d3"]
        assert docs[0].pages[0].text == "First\n\nAlpha text."
        assert docs[0].metadata == {"id": "d1", "title": "First"}
        assert docs[1].pages[0].text == "Beta text." and docs[1].metadata == {"id": "2"}
        assert docs[0].content == json.dumps(CORPUS[0]).encode()
        assert {doc.format for doc in docs} == {"jsonl"}


@pytest.mark.parametrize(
    "bad_line", [b"{not json", b'{"_id": "x"}', b'["a list"]', b'{"text": "no id"}']
)
def test_jsonl_bad_line_fails_the_whole_file(bad_line: bytes) -> None:
    lines = corpus_bytes(CORPUS[:2]).splitlines() + [bad_line]
    with pytest.raises(DocumentLoadError, match="line 3"):
        load_bytes("corpus.jsonl", b"\n".join(lines))


def test_jsonl_duplicate_id_is_a_load_error() -> None:
    with pytest.raises(DocumentLoadError, match="duplicate id 'd1'"):
        load_bytes("corpus.jsonl", corpus_bytes([CORPUS[0], CORPUS[0]]))


# --- folders and paths --------------------------------------------------------------------------


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_folder_walk_is_sorted_relative_and_skips_hidden_and_unsupported(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    for rel in ("b.md", "a.txt", "sub/c.md", ".hidden.md", ".git/x.md", "image.png", "sub/d.html"):
        write(root / rel, b"<p>text</p>" if rel.endswith("html") else b"text of " + rel.encode())
    write(root / "sub/pack.zip", make_zip({"m.txt": b"member"}))
    items = list(iter_documents([root]))
    assert failures(items) == []
    sources = [doc.source for doc in documents(items)]
    assert sources == ["a.txt", "b.md", "sub/c.md", "sub/d.html", "sub/pack.zip/m.txt"]
    assert count_files([root]) == 5


def test_explicit_paths_file_unsupported_and_missing(tmp_path: Path) -> None:
    write(tmp_path / "notes.txt", b"hello")
    write(tmp_path / "photo.png", b"\x89PNG")
    paths = [tmp_path / "notes.txt", tmp_path / "photo.png", tmp_path / "nope.md"]
    items = list(iter_documents(paths))
    assert isinstance(items[0], LoadedDocument) and items[0].source == "notes.txt"
    assert isinstance(items[1], FileFailure) and items[1].source == "photo.png"
    assert "unsupported file type" in items[1].reason and ".pdf, .txt" in items[1].reason
    assert isinstance(items[2], FileFailure) and items[2].source == "nope.md"
    assert items[2].reason.endswith("no such file or directory")
    assert count_files(paths) == 3


def test_bad_file_in_a_folder_does_not_stop_the_walk(tmp_path: Path) -> None:
    write(tmp_path / "a.pdf", b"not a pdf")
    write(tmp_path / "b.txt", b"fine")
    items = list(iter_documents([tmp_path]))
    assert [type(item).__name__ for item in items] == ["FileFailure", "LoadedDocument"]
    assert isinstance(items[0], FileFailure)
    assert items[0].source == "a.pdf" and "corrupt" in items[0].reason
