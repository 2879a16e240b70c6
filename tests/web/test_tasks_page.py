"""The Tasks tab in headless Chromium: a template's own inputs appear, a run shows the task's output
and the model's reply, and the tab fits a phone."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import shot


def _tasks_tab(page: Any) -> None:
    page.wait_for_selector("#collection option", state="attached")
    page.click("nav [data-tab=tasks]")
    page.wait_for_selector("#taskForm select[name=task] option[value=coreference]", state="attached")


def test_a_qa_task_runs_on_a_pasted_passage(page: Any) -> None:
    _tasks_tab(page)
    page.select_option("#taskForm select[name=task]", "sentiment")
    assert page.is_hidden("#taskForm .ctx") and page.is_visible("#taskForm .probe")
    page.select_option("#taskForm select[name=task]", "qa")
    assert page.is_visible("#taskForm .ctx") and page.is_hidden("#taskForm .coref")
    page.fill("#taskForm textarea[name=text]", "what does the blue pump do?")
    page.fill("#taskForm textarea[name=context]", "The blue pump moves water uphill.")
    page.click("#taskForm button[type=submit]")
    page.wait_for_selector("#taskOut .taskOutput")
    assert "blue pump moves water uphill" in page.inner_text("#taskOut .taskOutput")
    assert "zero_shot" in page.inner_text("#taskOut .meta")
    page.select_option("#taskForm select[name=task]", "coreference")
    assert page.is_visible("#taskForm .coref") and page.is_hidden("#taskForm .ctx")
    shot(page, "tasks")


def test_the_tasks_tab_fits_a_390px_phone(page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _tasks_tab(page)
    page.select_option("#taskForm select[name=task]", "coreference")
    page.wait_for_timeout(150)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the tasks tab is {width} px wide at 390"
    shot(page, "phone-tasks")
