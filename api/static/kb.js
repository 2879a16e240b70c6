// Collections: create, choose, delete; upload with per-file progress and results; documents.

import {$, $$, api, coll, esc, html, needCollection, onSubmit, showError, sleep, state, upload} from "./core.js";

const DOC_PAGE = 200;
const size = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`);
const day = (iso) => (iso || "").slice(0, 16).replace("T", " ");

/** Read the collections, fill the header's picker and the table; keep `choose` (or the current). */
export async function loadCollections(choose) {
  const list = await api("/v1/collections");
  state.collections = list;
  const want = choose ?? state.collection;
  state.collection = list.some((c) => c.name === want) ? want : (list[0] ? list[0].name : "");
  $("#collection").innerHTML = list.length ? list.map((c) => `<option>${esc(c.name)}</option>`).join("")
    : `<option value="">no collection yet</option>`;
  $("#collection").value = state.collection;
  $$(".collName").forEach((el) => { el.textContent = state.collection || "(no collection)"; });
  renderCollections();
  await loadDocuments();
}

function renderCollections() {
  const body = $("#collTable tbody");
  body.innerHTML = state.collections.length ? "" : `<tr><td colspan="6" class="meta">No collection yet: create one below.</td></tr>`;
  for (const c of state.collections) {
    const row = html(`<table><tr class="${c.name === state.collection ? "current" : ""}">
      <td class="src"><button type="button" class="small pick">${esc(c.name)}</button></td><td>${c.documents}</td><td>${c.chunks}</td>
      <td>${c.chunk_size}/${c.chunk_overlap}</td><td>${esc(c.index)}</td>
      <td><button type="button" class="small danger">Delete</button></td></tr></table>`).querySelector("tr");
    row.querySelector(".pick").onclick = () => loadCollections(c.name).catch(docsFail);
    row.querySelector(".danger").onclick = async (e) => {
      if (!confirm(`Delete the collection ${c.name} and all its ${c.documents} documents?`)) return;
      e.target.disabled = true;
      try { await api(`/v1/collections/${encodeURIComponent(c.name)}`, {method: "DELETE"}); await loadCollections(); }
      catch (err) { docsFail(err); e.target.disabled = false; }
    };
    body.append(row);
  }
}

const docsFail = (err) => showError($("#docsError"), err);

export async function loadDocuments() {
  const body = $("#docTable tbody");
  if (!state.collection) { body.innerHTML = ""; $("#docCount").textContent = ""; return; }
  const r = await api(coll(`/documents?limit=${DOC_PAGE}&offset=0`));
  showError($("#docsError"), null);
  body.innerHTML = r.documents.length ? "" : `<tr><td colspan="7" class="meta">No documents yet: upload some above.</td></tr>`;
  for (const d of r.documents) {
    const warn = d.warnings.length ? ` <span class="pill warn" title="${esc(d.warnings.join("; "))}">warnings</span>` : "";
    const row = html(`<table><tr><td class="src">${esc(d.source)}${warn}</td><td>${esc(d.format)}</td><td>${d.n_chunks}</td>
      <td>${d.pages ?? "–"}</td><td>${size(d.size_bytes)}</td><td>${esc(day(d.created_at))}</td>
      <td><button type="button" class="small danger">Delete</button></td></tr></table>`).querySelector("tr");
    row.querySelector(".danger").onclick = async (e) => {
      if (!confirm(`Delete ${d.source} from ${state.collection}?`)) return;
      e.target.disabled = true;
      try { await api(coll(`/documents/${encodeURIComponent(d.doc_id)}`), {method: "DELETE"}); await loadCollections(); }
      catch (err) { docsFail(err); e.target.disabled = false; }
    };
    body.append(row);
  }
  $("#docCount").textContent = r.total > r.documents.length
    ? `showing ${r.documents.length} of ${r.total} documents` : `${r.total} document${r.total === 1 ? "" : "s"}`;
}

/** One line per uploaded file, updated as the job reports. */
function fileRows(files) {
  const out = $("#uploadOut");
  out.innerHTML = `<p class="meta" id="uploadSummary">uploading…</p><div class="progress"><div id="uploadBar"></div></div><ul class="files"></ul>`;
  const rows = new Map();
  for (const f of files) {
    const li = html(`<li data-file="${esc(f.name)}"><span class="name">${esc(f.name)}</span> <span class="state">waiting</span><div class="progress" hidden><div></div></div></li>`);
    out.querySelector(".files").append(li);
    rows.set(f.name, li);
  }
  return rows;
}

function setRow(li, cls, text, fraction) {
  li.className = cls;
  li.querySelector(".state").textContent = text;
  const bar = li.querySelector(".progress");
  bar.hidden = fraction === undefined;
  if (fraction !== undefined) bar.firstElementChild.style.width = `${Math.round(fraction * 100)}%`;
}

function showJob(job, rows, finished) {
  const failed = new Map(job.errors.map((e) => [e.source, e.reason]));
  for (const [name, reason] of failed) {
    const li = rows.get(name) || rows.get(name.split("/")[0]);
    if (li && !li.classList.contains("failed")) setRow(li, "failed", `failed: ${reason}`);
  }
  for (const [name, li] of rows) {
    if (failed.has(name) || li.classList.contains("failed")) continue;
    if (job.current_file === name) {
      const total = job.current_chunks_total, pages = job.current_pages_total;
      const page = pages ? `page ${job.current_pages_done}/${pages}` : "";
      if (total) setRow(li, "running", `${page ? `${page} read; ` : ""}embedding: ${job.current_chunks} of ${total} chunks made so far`, job.current_chunks / total);
      else if (pages) setRow(li, "running", `reading ${page}`, job.current_pages_done / pages);
      else setRow(li, "running", "reading and chunking…", 0);
    } else if (finished || li.classList.contains("running") || li.classList.contains("ok")) {
      setRow(li, "ok", finished && job.state === "failed" && !failed.size ? "not ingested" : "ingested");
    }
  }
  const done = job.files_total ? job.files_done / job.files_total : 0;
  $("#uploadBar").style.width = `${Math.round((finished ? 1 : done) * 100)}%`;
  $("#uploadSummary").textContent = finished ? jobSummary(job)
    : `${job.state}: ${job.files_done} of ${job.files_total} files done, ${job.chunks_added} chunks added so far`;
}

function jobSummary(job) {
  const r = job.results || {};
  const ok = (r.added || 0) + (r.replaced || 0);
  const parts = [`${ok} document${ok === 1 ? "" : "s"} ingested`];
  if (r.unchanged) parts.push(`${r.unchanged} unchanged (already there)`);
  if (job.errors.length) parts.push(`${job.errors.length} failed`);
  parts.push(`${job.chunks_added} chunks added`);
  const head = job.state === "succeeded" ? (job.errors.length ? "Finished with errors" : "Done")
    : job.state === "failed" ? "Failed" : `Ended (${job.state})`;
  return `${head}: ${parts.join(", ")}${job.note ? `. ${job.note}` : ""}`;
}

async function doUpload(form) {
  const name = needCollection();
  const files = [...form.files.files];
  if (!files.length) throw new Error("choose one or more files first");
  const data = new FormData();
  files.forEach((f) => data.append("files", f));
  if (form.metadata.value.trim()) data.append("metadata", form.metadata.value.trim());
  const rows = fileRows(files);
  let job;
  try {
    job = await upload(coll("/documents"), data, (frac) => {
      $("#uploadBar").style.width = `${Math.round(frac * 100)}%`;
      $("#uploadSummary").textContent = `uploading ${files.length} file${files.length === 1 ? "" : "s"}: ${Math.round(frac * 100)}%`;
    });
  } catch (err) {
    $("#uploadOut").innerHTML = "";
    throw err;
  }
  while (job.state === "queued" || job.state === "running") {
    showJob(job, rows, false);
    await sleep(400);
    job = await api(`/v1/ingest-jobs/${job.job_id}`);
  }
  showJob(job, rows, true);
  form.files.value = "";
  await loadCollections(name);
  if (job.state === "failed") throw new Error(jobSummary(job));
}

export function initKb() {
  $("#collection").onchange = (e) => loadCollections(e.target.value).catch(docsFail);
  onSubmit($("#createForm"), async (form) => {
    const c = await api("/v1/collections", {method: "POST", json: {name: form.name.value.trim()}});
    form.reset();
    await loadCollections(c.name);
  }, "creating…");
  onSubmit($("#uploadForm"), doUpload, "uploading…");
}
