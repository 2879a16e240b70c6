"""/docs and /redoc work without internet: their scripts and styles are served by ragtune itself."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_api_docs_load_nothing_from_elsewhere(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200 and "/openapi.json" in html.text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
        assert urls and all(u.startswith("/docs-assets/") for u in urls), urls
        assert "cdn." not in html.text and "fonts.googleapis" not in html.text
        for url in urls:
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url
