// Task templates: pick one (sentiment, QA, translation, ...), a prompting mode, run it on a text.

import {$, api, esc, html, onSubmit, state} from "./core.js";

let tasks = [];

export async function loadTasks() {
  if (tasks.length) return;
  tasks = await api("/v1/tasks");
  const pick = $("#taskForm").task;
  pick.innerHTML = tasks.map((t) => `<option value="${esc(t.name)}">${esc(t.name)}: ${esc(t.title)}</option>`).join("");
  fit();
}

/** Show the inputs the chosen task takes. */
function fit() {
  const form = $("#taskForm");
  const t = tasks.find((x) => x.name === form.task.value);
  if (!t) return;
  form.querySelector(".ctx").hidden = !t.needs_context;
  form.querySelector(".coref").hidden = !t.needs_target;
  form.querySelector(".probe").hidden = !t.probe_trainable;
  $("#taskInfo").textContent = `${t.kind} output; evaluated by ${t.metric} on ${t.eval_items} items`
    + (t.choices.length ? `; labels: ${t.choices.join(", ")}` : "")
    + (t.fields.length ? `; fields: ${t.fields.join(", ")}` : "");
}

async function run(form) {
  const t = tasks.find((x) => x.name === form.task.value);
  const body = {text: form.text.value.trim(), mode: form.mode.value};
  if (t.needs_context) {
    if (form.useCollection.checked) {
      if (!state.collection) throw new Error("choose a collection in the header, or paste a passage");
      body.collection = state.collection;
    } else body.context = form.context.value;
  }
  if (t.needs_target) {
    body.target = form.target.value.trim();
    body.choices = form.choices.value.split(",").map((s) => s.trim()).filter(Boolean);
  }
  if (t.probe_trainable && form.classifier.value.trim()) body.classifier = form.classifier.value.trim();
  const r = await api(`/v1/tasks/${encodeURIComponent(t.name)}`, {method: "POST", json: body});
  const out = r.output === null ? "(the reply gave no answer the task could read)"
    : typeof r.output === "object" ? JSON.stringify(r.output, null, 2) : String(r.output);
  const box = $("#taskOut");
  box.innerHTML = "";
  box.append(html(`<div><pre class="taskOutput">${esc(out)}</pre>
    <p class="meta">${esc(r.mode)} · ${r.seconds.toFixed(1)} s${r.sources.length ? ` · from ${esc(r.sources.join(", "))}` : ""}</p>
    <details><summary>the model's whole reply</summary><pre>${esc(r.reply)}</pre></details></div>`));
}

export function initTasks() {
  const form = $("#taskForm");
  form.task.onchange = fit;
  onSubmit(form, run, "running…");
}
