"""The guardrails in the browser: the screen's verdict beside an answer, the strict option sent
with the ask, and a stored tuning dataset screened from the Tuning tab."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.web.conftest import Live, shot


def test_an_offensive_question_shows_its_flag_and_strict_is_sent(page: Any) -> None:
    page.wait_for_selector("#collection option", state="attached")
    bodies: list[dict[str, Any]] = []
    page.on("request", lambda r: bodies.append(json.loads(r.post_data or "{}"))
            if r.url.endswith("/ask") else None)
    page.click("#askForm details.options summary")
    page.check("#askForm input[name=strict]")
    page.fill("#question", "what the fuck does the blue pump do?")
    page.click("#askForm button[type=submit]")
    page.wait_for_selector("ol.citations")
    flag = page.inner_text("#askOut .pill.bad")
    assert flag.startswith("offensive: question") and "fuck" in flag, flag
    assert "grounded" in page.inner_text("#askOut")
    assert bodies and bodies[-1]["strict"] is True
    shot(page, "ask-screened")
    page.uncheck("#askForm input[name=strict]")
    page.fill("#question", "what does the blue pump do?")
    page.click("#askForm button[type=submit]")
    page.wait_for_selector("#askOut .pill:has-text('screened: not offensive')")
    assert "strict" not in bodies[-1]


def test_a_stored_dataset_is_screened_from_the_tuning_tab(page: Any, live: Live,
                                                          tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": "hi"},
                          {"role": "assistant", "content": text}]}
            for text in ("Hello, how can I help?", "Go away, this is bullshit.")]
    data = tmp_path / "screen-me.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    live.services.tuning.add_dataset(data)
    page.click("nav [data-tab=tuning]")
    row = "#datasetTable tr:has-text('screen-me.jsonl')"
    page.click(f"{row} button.screen")
    page.wait_for_selector("[data-testid=screening]")
    assert "1 of 2 records flagged" in page.inner_text("[data-testid=screening]")
    assert "messages[1].content" in page.inner_text("#datasetOut table")
    shot(page, "dataset-screened")
