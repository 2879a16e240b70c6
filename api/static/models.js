// Adapters (list, activate, deactivate, base vs adapter side by side) and evaluations.

import {$, $$, api, busy, coll, esc, fmt, html, needCollection, onSubmit, showError, sleep} from "./core.js";
import {askInto} from "./answer.js";

const day = (iso) => (iso || "").slice(0, 16).replace("T", " ");

export async function loadAdapters() {
  const r = await api("/v1/adapters");
  $("#activeInfo").textContent = r.active ? `Requests that name no adapter are answered by ${r.active}.`
    : "Requests that name no adapter are answered by the base model.";
  const body = $("#adapterTable tbody");
  body.innerHTML = r.adapters.length ? "" : `<tr><td colspan="6" class="meta">No adapter registered: train one in the Tuning tab.</td></tr>`;
  for (const a of r.adapters) {
    const flags = `${a.active ? `<span class="pill good">active</span>` : ""}${a.loaded ? ` <span class="pill">loaded</span>` : ""}`;
    const row = html(`<table><tr data-adapter="${esc(a.name)}"><td class="src">${esc(a.name)}</td><td>${esc(a.method)}</td><td>${esc(a.base_model)}</td>
      <td>${esc(day(a.created_at))}</td><td>${flags}</td><td></td></tr></table>`).querySelector("tr");
    if (!a.active) {
      const b = html(`<button type="button" class="small">Activate</button>`);
      b.onclick = () => busy(b, $("#adaptersError"), async () => {
        await api(`/v1/adapters/${encodeURIComponent(a.name)}/activate`, {method: "POST"});
        await loadAdapters();
      }, "activating…");
      row.lastElementChild.append(b);
    }
    body.append(row);
  }
  $("#deactivate").disabled = !r.active;
  for (const pick of $$(".adapterPick")) {
    const was = pick.value;
    const named = r.adapters.map((a) => `<option value="${esc(a.name)}">${esc(a.name)}</option>`).join("");
    pick.innerHTML = pick.classList.contains("named") ? (named || `<option value="">no adapter</option>`)
      : `<option value="">active (${esc(r.active || "base")})</option><option value="base">base model</option>${named}`;
    if ([...pick.options].some((o) => o.value === was)) pick.value = was;
  }
}

async function compare(form) {
  needCollection();
  const question = form.question.value.trim();
  const adapter = form.adapter.value;
  if (!adapter) throw new Error("there is no adapter to compare with the base model");
  $("#cmpAdapterName").textContent = adapter;
  $("#cmpBase").innerHTML = "";
  $("#cmpAdapter").innerHTML = `<p class="meta">waiting for the base model's answer…</p>`;
  // one after the other: the server generates one answer at a time anyway
  await askInto($("#cmpBase"), {question, adapter: "base"});
  await askInto($("#cmpAdapter"), {question, adapter});
}

function parseGolden(text) {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  if (lines.length === 1 && lines[0].startsWith("[")) return JSON.parse(lines[0]);
  if (text.trim().startsWith("[")) return JSON.parse(text);
  return lines.map((l, i) => {
    try { return JSON.parse(l); } catch (err) { throw new Error(`line ${i + 1} is not JSON: ${err.message}`); }
  });
}

const SUMMARY_LABELS = {
  answer_accuracy: "answer accuracy", hit_at_k: "hit@k", refusal_rate: "refusal (unanswerable)",
  false_refusal_rate: "false refusal", citation_precision: "citation precision", grounded_rate: "grounded",
};

function renderEval(run) {
  const out = $("#evalOut");
  const summary = Object.entries(run.summary || {}).map(([k, v]) =>
    `<div>${esc(SUMMARY_LABELS[k] || k.replaceAll("_", " "))}<b>${fmt(v, 3)}</b></div>`).join("");
  const yes = (b) => `<td class="${b ? "yes" : "no"}">${b ? "yes" : "no"}</td>`;
  const rows = (run.results || []).map((q) => `<tr><td class="src">${esc(q.id)}</td><td>${q.answerable ? "answerable" : "unanswerable"}</td>
    ${yes(q.correct)}${yes(q.refused)}${yes(q.hit_at_k)}${yes(q.cited_gold)}${yes(q.grounded)}<td>${fmt(q.latency_s, 2)}</td><td class="src">${esc(q.answer)}</td></tr>`).join("");
  out.innerHTML = `<p class="meta">Evaluation <code>${esc(run.eval_id)}</code> on ${esc(run.collection)}: <span class="pill" data-testid="eval-state">${esc(run.state)}</span>
    ${run.questions} questions${run.error ? ` · <span class="error">${esc(run.error)}</span>` : ""}</p>
    ${summary ? `<div class="summary">${summary}</div>` : ""}
    ${rows ? `<div class="scroll"><table class="evalResults"><thead><tr><th>question</th><th>kind</th><th>correct</th><th>refused</th><th>hit@k</th><th>cited gold</th><th>grounded</th><th>s</th><th>answer</th></tr></thead><tbody>${rows}</tbody></table></div>` : ""}`;
}

async function followEval(id) {
  let run = await api(`/v1/evals/${id}`);
  while (run.state === "queued" || run.state === "running") {
    renderEval(run);
    await sleep(500);
    run = await api(`/v1/evals/${id}`);
  }
  renderEval(run);
  await loadEvals();
}

export async function loadEvals() {
  const runs = await api("/v1/evals");
  const body = $("#evalTable tbody");
  body.innerHTML = runs.length ? "" : `<tr><td colspan="6" class="meta">No evaluation yet.</td></tr>`;
  for (const r of runs) {
    const row = html(`<table><tr><td class="src">${esc(r.collection)}</td><td>${esc(r.state)}</td><td>${r.questions}</td>
      <td>${fmt(r.summary.answer_accuracy, 3)}</td><td>${esc(day(r.created_at))}</td><td><button type="button" class="small">Show</button></td></tr></table>`).querySelector("tr");
    row.querySelector("button").onclick = () => followEval(r.eval_id).catch((err) => showError($("#evalForm .error"), err));
    body.append(row);
  }
}

export function initModels() {
  $("#deactivate").onclick = (e) => busy(e.target, $("#adaptersError"), async () => {
    await api("/v1/adapters/deactivate", {method: "POST"});
    await loadAdapters();
  }, "switching…");
  onSubmit($("#compareForm"), compare, "comparing…");
  onSubmit($("#evalForm"), async (form) => {
    needCollection();
    const file = form.file.files[0];
    const text = file ? await file.text() : form.text.value;
    if (!text.trim()) throw new Error("choose a golden-set file or paste its lines");
    const questions = parseGolden(text);
    const run = await api(coll("/evals"), {method: "POST", json: {questions, k: Number(form.k.value || 5)}});
    await followEval(run.eval_id);
  }, "evaluating…");
}
