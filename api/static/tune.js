// Tuning: datasets (validation problems by line), jobs (start, cancel, resume), a live loss chart.

import {$, api, esc, fmt, html, onSubmit, showError, sse, upload} from "./core.js";

const FINISHED = ["succeeded", "failed", "cancelled", "interrupted"];
const LOG_LINES = 400;
let watching = null; // {id, abort}

async function loadDatasets() {
  const list = await api("/v1/tuning/datasets");
  const body = $("#datasetTable tbody");
  body.innerHTML = list.length ? "" : `<tr><td colspan="6" class="meta">No dataset yet.</td></tr>`;
  for (const d of list) {
    const row = html(`<table><tr><td class="src">${esc(d.filename)}</td><td>${esc(d.kind)}</td><td>${esc(d.format)}</td>
      <td>${d.records}</td><td><code>${esc(d.id)}</code></td><td><button type="button" class="small screen" title="screen every text for offensive content before training">Screen</button> <button type="button" class="small danger">Delete</button></td></tr></table>`).querySelector("tr");
    row.querySelector(".screen").onclick = (e) => screenDataset(d, e.target);
    row.querySelector(".danger").onclick = async (e) => {
      e.target.disabled = true;
      try { await api(`/v1/tuning/datasets/${d.id}`, {method: "DELETE"}); await loadDatasets(); }
      catch (err) { showError($("#jobsError"), err); e.target.disabled = false; }
    };
    body.append(row);
  }
  const pick = $("#jobForm select[name=dataset_id]");
  const was = pick.value;
  const train = list.filter((d) => d.kind !== "questions");
  pick.innerHTML = train.length ? train.map((d) => `<option value="${esc(d.id)}">${esc(d.filename)} (${d.records} ${esc(d.kind)})</option>`).join("")
    : `<option value="">upload a dataset first</option>`;
  if (train.some((d) => d.id === was)) pick.value = was;
}

/** Screen a stored dataset for offensive text (POST /v1/guard/datasets/{id}) into #datasetOut. */
async function screenDataset(d, button) {
  const out = $("#datasetOut");
  button.disabled = true;
  try {
    const r = await api(`/v1/guard/datasets/${d.id}`, {method: "POST"});
    const rows = r.flagged.slice(0, 50).map((f) => `<tr><td>${f.line}</td><td>${esc(f.field)}</td><td>${fmt(f.score, 2)}</td><td class="src">${esc(f.text)}</td></tr>`).join("");
    out.innerHTML = `<p class="meta" data-testid="screening">${esc(d.filename)}: ${r.flagged_records} of ${r.records} records flagged as offensive (${r.texts} texts, screen ${esc(r.screen)})</p>`
      + (rows ? `<div class="scroll"><table class="problems"><thead><tr><th>line</th><th>field</th><th>score</th><th>text</th></tr></thead><tbody>${rows}</tbody></table></div>` : "");
  } catch (err) { showError($("#jobsError"), err); }
  button.disabled = false;
}

function problemsTable(problems) {
  const rows = problems.map((p) => `<tr><td>${p.line ?? "—"}</td><td>${esc(p.field ?? "—")}</td><td>${esc(p.message)}</td></tr>`).join("");
  return `<div class="scroll"><table class="problems"><thead><tr><th>line</th><th>field</th><th>problem</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

async function uploadDataset(form) {
  const data = new FormData();
  data.append("file", form.file.files[0]);
  data.append("kind", form.kind.value);
  const out = $("#datasetOut");
  out.innerHTML = "";
  try {
    const d = await upload("/v1/tuning/datasets", data, () => {});
    out.innerHTML = `<p class="meta">Stored <b>${esc(d.filename)}</b>: ${d.records} records, format ${esc(d.format)}, id <code>${esc(d.id)}</code>.</p>`;
    form.reset();
    await loadDatasets();
    $("#jobForm select[name=dataset_id]").value = d.id;
  } catch (err) {
    if (err.body && err.body.problems && err.body.problems.length) {
      out.innerHTML = `<p class="meta">${err.body.problems.length} problem(s) to fix before this file can be trained on:</p>${problemsTable(err.body.problems)}`;
    }
    throw err;
  }
}

function jobBody(form) {
  const f = new FormData(form);
  const config = {};
  for (const k of ["epochs", "max_steps", "batch_size", "lora_r"]) if (f.get(k)) config[k] = Number(f.get(k));
  if (f.get("lr")) config.lr = Number(f.get("lr"));
  const body = {name: f.get("name").trim(), dataset_id: f.get("dataset_id"), config};
  if (f.get("method")) body.method = f.get("method");
  if (f.get("regex")) body.checks = {regex: f.get("regex")};
  if (f.get("promote_if_better")) body.promote_if_better = true;
  return body;
}

async function loadJobs() {
  const jobs = await api("/v1/tuning/jobs");
  const body = $("#jobTable tbody");
  body.innerHTML = jobs.length ? "" : `<tr><td colspan="5" class="meta">No job yet.</td></tr>`;
  for (const j of jobs) {
    const row = html(`<table><tr data-job="${esc(j.job_id)}"><td class="src">${esc(j.name)}</td><td>${stateLabel(j)}</td>
      <td>${j.step}/${j.total_steps || "?"}</td><td>${fmt(j.loss, 4)}</td><td class="actions"></td></tr></table>`).querySelector("tr");
    const actions = row.querySelector(".actions");
    const add = (label, fn, cls = "small") => {
      const b = html(`<button type="button" class="${cls}">${label}</button>`);
      b.onclick = async () => { b.disabled = true; try { await fn(); } catch (err) { showError($("#jobsError"), err); } finally { b.disabled = false; } };
      actions.append(b, " ");
    };
    add("Watch", () => watch(j.job_id));
    if (!FINISHED.includes(j.state) && !j.cancel_requested) add("Cancel", () => act(j.job_id, "cancel"), "small danger");
    if (j.resumable) add("Resume", () => act(j.job_id, "resume"));
    body.append(row);
  }
  return jobs;
}

const stateLabel = (j) => `<span class="pill ${j.state === "succeeded" ? "good" : j.state === "failed" ? "bad" : ""}">${esc(j.state)}${j.cancel_requested && !FINISHED.includes(j.state) ? " (cancelling)" : ""}</span>`;

async function act(id, verb) {
  await api(`/v1/tuning/jobs/${id}/${verb}`, {method: "POST"});
  showError($("#jobsError"), null);
  await loadJobs();
  if (verb === "resume" || (watching && watching.id === id)) watch(id);
}

/** Points (step, loss, eval_loss) from training.log lines: "step=3/10 epoch=… loss=1.2 eval_loss=…". */
function parsePoint(line) {
  const step = line.match(/\bstep=(\d+)/);
  if (!step) return null;
  const loss = line.match(/\bloss=([\d.eE+-]+)/);
  const ev = line.match(/\beval_loss=([\d.eE+-]+)/);
  return {step: Number(step[1]), loss: loss ? Number(loss[1]) : null, eval: ev ? Number(ev[1]) : null};
}

/** The loss chart as inline SVG: train loss (solid) and eval loss (dots) by step. */
export function drawChart(svg, points) {
  const W = 600, H = 200, L = 46, R = 10, T = 10, B = 26;
  const vals = points.flatMap((p) => [p.loss, p.eval]).filter((v) => v !== null && Number.isFinite(v));
  if (!vals.length) { svg.innerHTML = `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#888">no loss reported yet</text>`; return; }
  const maxS = Math.max(...points.map((p) => p.step), 1), minS = Math.min(...points.map((p) => p.step), 0);
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const x = (s) => L + ((s - minS) / Math.max(maxS - minS, 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const line = points.filter((p) => p.loss !== null).map((p, i) => `${i ? "L" : "M"}${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(" ");
  const dots = points.filter((p) => p.eval !== null).map((p) => `<circle cx="${x(p.step).toFixed(1)}" cy="${y(p.eval).toFixed(1)}" r="3.5" fill="#d46b08"><title>step ${p.step}: eval loss ${p.eval}</title></circle>`).join("");
  svg.innerHTML = `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#bbb"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#bbb"/>
    <text x="${L - 4}" y="${T + 8}" text-anchor="end" font-size="11" fill="#555">${hi.toFixed(3)}</text>
    <text x="${L - 4}" y="${H - B}" text-anchor="end" font-size="11" fill="#555">${lo.toFixed(3)}</text>
    <text x="${L}" y="${H - 8}" font-size="11" fill="#555">step ${minS}</text><text x="${W - R}" y="${H - 8}" text-anchor="end" font-size="11" fill="#555">step ${maxS}</text>
    <path d="${line}" fill="none" stroke="#2456a6" stroke-width="2" data-points="${points.filter((p) => p.loss !== null).length}"/>${dots}`;
}

function showProgress(j) {
  $("#watchName").textContent = j.name;
  $("#watchState").textContent = j.state + (j.phase ? ` · ${j.phase}` : "") + (j.cancel_requested && !FINISHED.includes(j.state) ? " · cancelling" : "");
  $("#watchBar").style.width = `${Math.round((j.progress || 0) * 100)}%`;
  const bits = [`step ${j.step} of ${j.total_steps || "?"}`, `loss ${fmt(j.loss, 4)}`, `eval loss ${fmt(j.eval_loss, 4)}`];
  if (j.tokens_per_s) bits.push(`${j.tokens_per_s.toFixed(1)} tokens/s`);
  if (j.eta_s && !FINISHED.includes(j.state)) bits.push(`about ${Math.round(j.eta_s)} s left`);
  if (j.error) bits.push(`error: ${j.error}`);
  $("#watchInfo").textContent = bits.join(" · ");
}

/** Follow a job's SSE log: lines into the log box, the chart redrawn, progress shown. */
export async function watch(id) {
  if (watching) watching.abort.abort();
  const abort = new AbortController();
  watching = {id, abort};
  $("#jobWatch").hidden = false;
  $("#jobLog").textContent = "";
  const points = [];
  const log = [];
  let lastState = null;
  drawChart($("#lossChart"), points);
  try {
    await sse(`/v1/tuning/jobs/${id}/logs`, {signal: abort.signal, onEvent: (name, data) => {
      if (name === "log") {
        log.push(`[${data.source}] ${data.line}`);
        if (log.length > LOG_LINES) log.shift();
        $("#jobLog").textContent = log.join("\n");
        $("#jobLog").scrollTop = $("#jobLog").scrollHeight;
        const p = data.source === "training" ? parsePoint(data.line) : null;
        if (p) { points.push(p); drawChart($("#lossChart"), points); }
      } else if (name === "progress" || name === "end") {
        showProgress(data);
        if (name === "end" || data.state !== lastState) loadJobs().catch((err) => showError($("#jobsError"), err));
        lastState = data.state;
      } else if (name === "error") {
        throw new Error(data.detail);
      }
    }});
  } catch (err) {
    if (err.name !== "AbortError") showError($("#jobsError"), err);
  }
}

export async function loadTuning() {
  await Promise.all([loadDatasets(), loadJobs()]);
}

export function initTuning() {
  onSubmit($("#datasetForm"), uploadDataset, "checking…");
  onSubmit($("#jobForm"), async (form) => {
    const job = await api("/v1/tuning/jobs", {method: "POST", json: jobBody(form)});
    await loadJobs();
    watch(job.job_id);
  }, "starting…");
}
