"""Property tests (hypothesis) for the loaders: any bytes under any supported name are either
documents or a per-file failure with a reason; nothing raises, and text round-trips."""

from __future__ import annotations

import io
import zipfile

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ingest.loaders import iter_bytes  # noqa: E402
from ingest.types import LoadedDocument  # noqa: E402

NAMES = st.sampled_from(["a.txt", "b.md", "c.html", "d.jsonl", "e.zip", "f.pdf", "g.markdown"])
FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@FAST
@given(name=NAMES, data=st.binary(max_size=4096))
def test_any_bytes_load_or_fail_with_a_reason(name: str, data: bytes) -> None:
    for item in iter_bytes(name, data):
        if isinstance(item, LoadedDocument):
            assert item.pages and any(p.text.strip() for p in item.pages)
        else:
            assert item.reason and item.source.startswith(name)


@FAST
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                    max_size=500).filter(lambda t: t.strip()))
def test_utf8_text_is_read_back_as_written(text: str) -> None:
    (doc,) = list(iter_bytes("note.txt", text.encode("utf-8")))
    assert isinstance(doc, LoadedDocument) and doc.warnings == []
    assert " ".join(doc.pages[0].text.split()) == " ".join(text.split())


@FAST
@given(members=st.dictionaries(st.from_regex(r"[a-z]{1,8}\.(txt|md|png|zip)", fullmatch=True),
                               st.binary(max_size=300), max_size=6))
def test_every_archive_member_is_accounted_for(members: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    items = list(iter_bytes("x.zip", buf.getvalue()))
    if not members:
        assert len(items) == 1 and not isinstance(items[0], LoadedDocument)
        return
    sources = {item.source.split("#")[0] for item in items}
    assert sources == {f"x.zip/{name}" for name in members}  # read, or failed with a reason
