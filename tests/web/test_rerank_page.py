"""The rerank option in the browser: sent with a search when ticked, and the server's reason shown
when no reranker is configured."""

from __future__ import annotations

import json
from typing import Any


def test_rerank_is_sent_with_a_search_and_a_missing_reranker_is_explained(page: Any) -> None:
    page.wait_for_selector("#collection option", state="attached")
    bodies: list[dict[str, Any]] = []
    page.on("request", lambda r: bodies.append(json.loads(r.post_data or "{}"))
            if r.url.endswith("/search") else None)
    page.click("nav [data-tab=search]")
    page.wait_for_selector("#tab-search:not([hidden])")
    page.check("#searchForm input[name=rerank]")
    page.fill("#query", "valves water")
    page.press("#query", "Enter")
    page.wait_for_selector("#searchForm .error:not([hidden])")
    assert "RAGTUNE_RERANKER" in page.inner_text("#searchForm .error")
    assert bodies and bodies[-1]["rerank"] is True
    page.uncheck("#searchForm input[name=rerank]")
    page.press("#query", "Enter")
    page.wait_for_selector("#hits .hit")
    assert "rerank" not in bodies[-1]
