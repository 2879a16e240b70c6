"""HTML → visible text: blocks on their own lines, table cells apart, the <title> as metadata."""

from __future__ import annotations

import re
from typing import Any

from bs4 import BeautifulSoup, CData, NavigableString, PageElement, Tag

from ingest.errors import DocumentLoadError
from ingest.types import LoadedDocument, Page

EXTRA_BLANK_LINES = re.compile(r"\n(?:[ \t\f\v]*\n){2,}")
_SPACES = re.compile(r"[^\S\n]+")
_HIDDEN_HTML = frozenset({"script", "style", "noscript", "template", "title"})
_HTML_BLOCKS = (
    "address", "article", "aside", "blockquote", "caption", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody",
    "tfoot", "thead", "tr", "ul",
)  # fmt: skip
_HTML_GAPS = {
    **{name: ("\n", "\n") for name in _HTML_BLOCKS},
    "br": ("\n", ""),
    "td": ("", " "),
    "th": ("", " "),
}



def load_html(source: str, data: bytes) -> LoadedDocument:
    soup = BeautifulSoup(data, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    text = _visible_text(soup)
    if not text:
        raise DocumentLoadError(source, "no visible text in the HTML page")
    metadata: dict[str, Any] = {"encoding": soup.original_encoding}
    if title:
        metadata["title"] = title
    return LoadedDocument(source, data, [Page(text)], "html", metadata)


def _visible_text(root: Tag) -> str:
    """Blocks on their own lines, table cells apart. Iterative and read-only, so that very long or
    deeply nested pages cost linear time (editing the tree in place is quadratic in bs4)."""
    parts: list[str] = []
    stack: list[PageElement | str] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, Tag):
            # <head> is not skipped wholesale: html.parser does not repair a missing </head>.
            if node.name not in _HIDDEN_HTML:
                before, after = _HTML_GAPS.get(node.name, ("", ""))
                parts.append(before)
                stack.append(after)
                stack.extend(reversed(node.contents))
        elif isinstance(node, NavigableString):
            if type(node) in (NavigableString, CData):  # not comments, doctypes, script text...
                parts.append(node)
        elif isinstance(node, str):  # a gap pushed above, due once the tag's contents are out
            parts.append(node)
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parts).splitlines())
    return EXTRA_BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


