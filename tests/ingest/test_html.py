"""HTML entities are decoded everywhere in a page, however often they repeat."""

from __future__ import annotations

import html

from ingest.html import load_html


def test_every_repetition_of_an_entity_is_decoded() -> None:
    body = "&amp;" * 20_000 + " " + "&lt;b&gt; &#38;&#x26; &copy; " * 5_000 + "&amp;amp;"
    text = load_html("e.html", f"<html><body><p>{body}</p></body></html>".encode()).pages[0].text
    assert text == html.unescape(body).strip()
    assert text.count("&") == 20_000 + 2 * 5_000 + 1 and "&lt;" not in text
    assert text.endswith("&amp;")  # an escaped entity is decoded once, as a browser shows it


def test_entities_split_across_tags_and_lines_are_decoded() -> None:
    page = "<div>" + "<b>&amp;</b>&lt;\n" * 3_000 + "</div>"
    text = load_html("t.html", page.encode()).pages[0].text
    assert text.split("\n") == ["&<"] * 3_000
