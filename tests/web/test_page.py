"""The web page in headless Chromium against a live server: collections, upload, ask, search,
tuning, adapters, evaluations, API keys and phone width. Each test asserts what a user sees."""

from __future__ import annotations

import json
import time
from typing import Any

from api.keys import KeyStore
from tests.ingest.fixtures import make_pdf
from tests.web.conftest import Live, shot

QUESTION = "what does the blue pump do?"


def _tab(page: Any, name: str) -> None:
    page.click(f"nav [data-tab={name}]")
    page.wait_for_selector(f"#tab-{name}:not([hidden])")


def _ready(page: Any) -> None:
    page.wait_for_selector("#collection option", state="attached")


def test_ask_streams_once_with_a_busy_state_and_citations_that_open(page: Any) -> None:
    _ready(page)
    asks: list[str] = []
    page.on("request", lambda r: asks.append(r.url) if r.url.endswith("/ask") else None)
    page.fill("#question", QUESTION)
    # the busy state may come and go before a wait for it starts (a loaded machine): an observer
    # set up first records whether it showed, and whether Ask was disabled while it did
    page.evaluate("""() => {
        window.busy = {seen: false, disabled: true};
        new MutationObserver(() => {
            if (document.querySelector("[data-testid=working]")) {
                window.busy.seen = true;
                window.busy.disabled &&= document.querySelector(
                    "#askForm button[type=submit]").disabled;
            }
        }).observe(document.body, {childList: true, subtree: true, attributes: true});
    }""")
    page.dblclick("#askForm button[type=submit]")
    page.press("#question", "Enter")  # a third try while it runs
    page.wait_for_selector(".answer.streaming, ol.citations")
    busy = page.evaluate("window.busy")
    assert busy["seen"], "a busy state must show while the answer is made"
    assert busy["disabled"], "Ask must be disabled while it works"
    shot(page, "ask-streaming")
    page.wait_for_selector("ol.citations")
    assert page.is_enabled("#askForm button[type=submit]")
    assert len(asks) == 1, f"one stream for a double-click and an Enter, got {len(asks)}"
    answer = page.inner_text("[data-testid=answer]")
    assert answer == "The blue pump moves water uphill [1]."
    text = page.inner_text("#askOut")
    assert "grounded" in text and "answerability: not scored" in text
    assert "score 0.000" not in text and "No results" not in text
    page.click(".answer button.cite")  # the [1] marker in the answer opens its passage
    page.wait_for_selector("#passage[open]")
    assert page.inner_text("#passageTitle") == "[1] pumps.md"
    assert "Brannock reservoir" in page.inner_text("#passageText")
    shot(page, "ask-citation")
    page.click("#passage .close")
    # Enter alone submits
    page.fill("#question", "zebra quantum jazz")
    page.press("#question", "Enter")
    page.wait_for_selector(".answer.refusal")
    assert len(asks) == 2


def test_a_refusal_reads_as_a_refusal(page: Any) -> None:
    _ready(page)
    page.fill("#question", "who painted the valves?")  # retrieved, but the model refuses
    page.click("#askForm button[type=submit]")
    page.wait_for_selector(".answer.refusal")
    text = page.inner_text("#askOut")
    assert "No answer from these documents" in text and "can't answer" in text
    assert "refused" in text and "grounded" not in text.replace("not grounded", "")
    assert "No results" not in text
    shot(page, "ask-refusal")


def test_search_lists_hits_with_scores_and_opens_them(page: Any) -> None:
    _ready(page)
    _tab(page, "search")
    page.fill("#query", "valves water")
    page.press("#query", "Enter")
    page.wait_for_selector("#hits .hit")
    first = page.inner_text("#hits .hit")
    assert "valves.txt" in first and "score" in first
    page.click("#hits .hit button")
    assert "mains" in page.inner_text("#passageText")
    shot(page, "search")


def test_collections_upload_progress_results_and_deletes(page: Any, live: Live,
                                                         tmp_path: Any) -> None:
    _ready(page)
    _tab(page, "collections")
    page.fill("#createForm input[name=name]", "handbook")
    page.press("#createForm input[name=name]", "Enter")
    page.wait_for_function("document.querySelector('#collection').value === 'handbook'")
    # an upload with nothing supported: the error shows under the upload, not elsewhere
    bad = tmp_path / "tool.exe"
    bad.write_bytes(b"MZ\x90\x00")
    page.set_input_files("#files", str(bad))
    page.click("#uploadForm button[type=submit]")
    page.wait_for_selector("#uploadForm .error:not([hidden])")
    assert ".exe" in page.inner_text("#uploadForm .error")
    assert page.is_hidden("#askForm .error") and page.is_hidden("#globalError")
    good = tmp_path / "leave.md"
    good.write_text("# Leave\n\nStaff get 25 days of annual leave.\n\n## Sick leave\n\nTell your manager.")
    other = tmp_path / "notes.txt"
    other.write_text("Fire drills happen every March.")
    pdf = tmp_path / "rota.pdf"
    pdf.write_bytes(make_pdf(["Night shifts rotate weekly.", None, "Swaps need a week's notice."]))
    page.set_input_files("#files", [str(good), str(other), str(pdf), str(bad)])
    page.click("#uploadForm button[type=submit]")
    page.wait_for_selector("#uploadSummary:has-text('Finished with errors')")
    assert page.is_hidden("#uploadForm .error"), "the earlier error is cleared by a success"
    rows = {li.get_attribute("data-file"): li.inner_text() for li in page.query_selector_all(".files li")}
    assert "ingested" in rows["leave.md"] and "ingested" in rows["notes.txt"]
    assert "failed" in rows["tool.exe"] and ".exe" in rows["tool.exe"]
    assert "3 documents ingested" in page.inner_text("#uploadSummary")
    shot(page, "upload-results")
    page.wait_for_selector("#docTable td:has-text('leave.md')")
    docs = page.inner_text("#docTable")
    assert "notes.txt" in docs and "3 documents" in page.inner_text("#docCount")
    pages = page.query_selector_all("#docTable tr:has-text('rota.pdf') td")[3].inner_text()
    assert pages == "3", "a PDF's row shows its page count"
    chunks = live.services.collection("handbook").docstore.documents()
    assert {d.source: d.n_chunks for d in chunks}["leave.md"] > 0
    page.click("#docTable tr:has-text('notes.txt') button.danger")
    page.wait_for_function("!document.querySelector('#docTable').innerText.includes('notes.txt')")
    assert "2 documents" in page.inner_text("#docCount")
    page.click("#collTable tr:has-text('handbook') button.danger")
    page.wait_for_function("document.querySelector('#collection').value === 'kb'")
    assert "handbook" not in page.inner_text("#collTable")


def test_tuning_dataset_problems_job_chart_cancel_and_resume(page: Any, live: Live,
                                                             tmp_path: Any) -> None:
    _ready(page)
    _tab(page, "tuning")
    bad = tmp_path / "bad.jsonl"
    rows = [{"instruction": f"Say {i}.", "output": f"{i} [1]"} for i in range(3)]
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"instruction": "no answer"}\n{oops\n')
    page.set_input_files("#datasetForm input[type=file]", str(bad))
    page.click("#datasetForm button[type=submit]")
    page.wait_for_selector("table.problems")
    lines = [td.inner_text() for td in page.query_selector_all("table.problems tbody tr td:first-child")]
    assert lines == ["4", "5"], lines
    assert page.is_visible("#datasetForm .error")
    shot(page, "tuning-problems")
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    page.set_input_files("#datasetForm input[type=file]", str(good))
    page.click("#datasetForm button[type=submit]")
    page.wait_for_selector("#datasetOut:has-text('Stored')")
    assert page.is_hidden("#datasetForm .error")
    page.fill("#jobForm input[name=name]", "cite")
    page.fill("#jobForm input[name=max_steps]", "4")
    page.fill("#jobForm input[name=lr]", "3e-4")
    page.press("#jobForm input[name=name]", "Enter")
    page.wait_for_selector("#jobTable td:has-text('cite')")
    job = live.services.tuning.store.list()[0]
    assert job.spec.train == {"max_steps": 4, "lr": 0.0003}
    _run_steps(live, job.id, steps=3)
    page.wait_for_function(
        "document.querySelector('#lossChart path')?.dataset.points === '3'")
    assert "step 3 of 4" in page.inner_text("#watchInfo")
    assert "loss=0.9000" in page.inner_text("#jobLog")
    shot(page, "tuning-chart")
    page.click(f"#jobTable tr[data-job='{job.id}'] button:has-text('Cancel')")
    page.wait_for_function(f"!document.querySelector(\"#jobTable tr[data-job='{job.id}']\")"
                           ".innerText.includes('Cancel')")
    assert live.services.tuning.store.get(job.id).cancel_requested
    live.services.tuning.store.finish(job.id, "cancelled")
    page.click(f"#jobTable tr[data-job='{job.id}'] button:has-text('Watch')")
    page.wait_for_selector(f"#jobTable tr[data-job='{job.id}'] button:has-text('Resume')")
    page.click(f"#jobTable tr[data-job='{job.id}'] button:has-text('Resume')")
    page.wait_for_selector(f"#jobTable tr[data-job='{job.id}'] :text('queued')")
    assert live.services.tuning.store.get(job.id).state == "queued"
    live.services.tuning.store.cancel(job.id)  # ends the page's log stream (the server waits on it)


def _run_steps(live: Live, job_id: str, steps: int) -> None:
    """What a worker would do: mark the job running and log some steps."""
    store = live.services.tuning.store
    log = live.services.tuning.log_paths(store.get(job_id))["training"]
    log.parent.mkdir(parents=True, exist_ok=True)
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == job_id
    store.update(job_id, phase="training", total_steps=4)
    for step in range(1, steps + 1):
        loss = 1.2 - 0.1 * step
        with log.open("a") as f:
            f.write(f"step={step}/4 epoch=0.500 loss={loss:.4f} tokens_per_s=50.0\n")
        store.update(job_id, step=step, loss=loss, tokens_per_s=50.0)
        time.sleep(0.2)


def test_adapters_activate_deactivate_and_compare(page: Any, live: Live) -> None:
    _ready(page)
    _tab(page, "adapters")
    page.wait_for_selector("#adapterTable tr[data-adapter=terse]")
    page.click("#adapterTable tr[data-adapter=terse] button:has-text('Activate')")
    page.wait_for_selector("#adapterTable tr[data-adapter=terse] .pill:has-text('active')")
    assert live.services.adapters.active() == "terse"
    assert "answered by terse" in page.inner_text("#activeInfo")
    page.fill("#compareForm input[name=question]", QUESTION)
    page.press("#compareForm input[name=question]", "Enter")
    page.wait_for_selector("#cmpAdapter ol.citations")
    assert page.inner_text("#cmpBase [data-testid=answer]") == "The blue pump moves water uphill [1]."
    assert page.inner_text("#cmpAdapter [data-testid=answer]").startswith("Terse says:")
    assert "answered by terse" in page.inner_text("#cmpAdapter")
    shot(page, "adapters-compare")
    page.click("#deactivate")
    page.wait_for_selector("#activeInfo:has-text('base model')")
    assert live.services.adapters.active() is None


def test_an_evaluation_runs_and_shows_its_summary_and_questions(page: Any) -> None:
    _ready(page)
    _tab(page, "evals")
    gold = [{"question": QUESTION, "answers": ["uphill"], "answerable": True, "doc": "pumps.md"},
            {"question": "zebra quantum jazz", "answerable": False}]
    page.fill("#evalForm textarea", "\n".join(json.dumps(g) for g in gold))
    page.click("#evalForm button[type=submit]")
    page.wait_for_selector("[data-testid=eval-state]:has-text('succeeded')", timeout=20_000)
    summary = page.inner_text("#evalOut .summary")
    assert "answer accuracy" in summary and "1.000" in summary
    assert len(page.query_selector_all("table.evalResults tbody tr")) == 2
    assert page.is_enabled("#evalForm button[type=submit]")
    shot(page, "evals")


def test_a_key_is_asked_for_kept_and_sent(page: Any, live: Live) -> None:
    store = KeyStore.in_data_dir(live.services.settings.data_dir)
    key, secret = store.create("web", "admin", None)
    try:
        page.reload()
        page.wait_for_selector("#keyBox[open] #keyForm .error:not([hidden])")
        assert "needs an API key" in page.inner_text("#keyForm .error")
        page.fill("#apiKey", secret)
        page.press("#apiKey", "Enter")
        page.wait_for_selector("#collection option[value=kb], #collection option:text('kb')",
                               state="attached")
        assert page.evaluate("localStorage.getItem('ragtune.apiKey')") == secret
        page.fill("#question", QUESTION)
        page.press("#question", "Enter")
        page.wait_for_selector("ol.citations")
    finally:
        store.revoke(key.id)
        page.evaluate("localStorage.clear()")


def test_every_tab_fits_a_390px_phone(page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _ready(page)
    page.fill("#question", QUESTION)
    page.press("#question", "Enter")
    page.wait_for_selector("ol.citations")
    for tab in ("ask", "search", "collections", "tuning", "adapters", "evals"):
        _tab(page, tab)
        page.wait_for_timeout(150)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the {tab} tab is {width} px wide at 390"
        # a table may scroll sideways inside its box, but its delete buttons must be in view
        cut = page.evaluate("""() => [...document.querySelectorAll('table button.danger')]
            .filter(b => b.offsetParent !== null && b.getBoundingClientRect().right > 390)
            .map(b => b.closest('table').id)""")
        assert not cut, f"delete buttons of {cut} ({tab} tab) are out of view at 390 px"
        shot(page, f"phone-{tab}")
