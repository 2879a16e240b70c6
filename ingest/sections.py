"""Bounded pieces of long texts, so that the splitters never hold a whole large file at once.

`windows` cuts a text into consecutive pieces of at most a given length, each ending at the most
natural boundary it can (paragraph, line, sentence, clause, word); `markdown_sections` groups a
Markdown text's lines under their header path the way langchain's MarkdownHeaderTextSplitter does,
in one linear pass (that splitter appends each paragraph to a growing string: quadratic on a long
section) and yielding a long section in parts. Both are pure and lose no text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

WINDOW_CHARS = 32_768
BOUNDARIES = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")
"""Where a window may end, best first: the chunker's own separators."""
MD_LEVELS = {"#": "h1", "##": "h2", "###": "h3", "####": "h4"}
_MD_HEADER = re.compile(r"(#{1,4})(?: (.*))?")


def windows(text: str, size: int = WINDOW_CHARS) -> Iterator[str]:
    """Yield consecutive pieces of `text`, joined back they are `text`. Each is at most `size`
    characters and ends just after the best boundary in its second half, or is cut hard if that half
    has none. A text of at most `size` characters is one piece."""
    if size < 2:
        raise ValueError(f"window size {size!r} must be >= 2")
    start = 0
    while len(text) - start > size:
        end = start + size
        cut = end
        for boundary in BOUNDARIES:
            found = text.rfind(boundary, start + size // 2, end)
            if found >= 0:
                cut = found + len(boundary)
                break
        yield text[start:cut]
        start = cut
    if start < len(text):
        yield text[start:]


def markdown_sections(text: str, part_chars: int = WINDOW_CHARS) -> Iterator[tuple[dict[str, str], str]]:
    """Yield `(headers, body)` for each run of content under the same headers (h1-h4, e.g.
    {"h1": "Guide", "h2": "Pumps"}) exactly as MarkdownHeaderTextSplitter(strip_headers=True) groups
    them: lines stripped of spaces and unprintable characters, header lines left out, blank lines
    dropped outside code fences, lines joined by a newline within a paragraph and by "  \\n" where
    a blank or header line came between. A body over `part_chars` is yielded in parts, cut between
    lines."""
    headers: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    owner: dict[str, str] = {}  # the headers that `parts` belong to
    parts: list[str] = []
    size = 0
    fence = ""
    paragraph_ended = False
    for raw in text.split("\n"):
        line = raw.strip()
        if not line.isprintable():
            line = "".join(filter(str.isprintable, line))
        if not fence:
            if line.startswith("```") and line.count("```") == 1:
                fence = "```"
            elif line.startswith("~~~"):
                fence = "~~~"
        elif line.startswith(fence):
            fence = ""
        match = None if fence else _MD_HEADER.fullmatch(line)
        if match is not None:
            level = len(match.group(1))
            while stack and stack[-1][0] >= level:
                headers.pop(stack.pop()[1], None)
            stack.append((level, MD_LEVELS[match.group(1)]))
            headers[stack[-1][1]] = (match.group(2) or "").strip()
            paragraph_ended = True
            continue
        if not line and not fence:
            paragraph_ended = True
            continue
        if parts and (headers != owner or size > part_chars):
            yield owner, "".join(parts)
            parts, size = [], 0
        if parts:
            parts.append("  \n" if paragraph_ended else "\n")
        else:
            owner = dict(headers)
        parts.append(line)
        size += len(line) + 1
        paragraph_ended = False
    if parts:
        yield owner, "".join(parts)
