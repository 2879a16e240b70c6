// Shared helpers of the web page: the API key, JSON and SSE requests, busy buttons, error slots.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const KEY = "ragtune.apiKey";

export const apiKey = () => localStorage.getItem(KEY) || "";
export const setApiKey = (key) => (key ? localStorage.setItem(KEY, key) : localStorage.removeItem(KEY));

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function withKey(opts = {}) {
  const key = apiKey();
  const headers = {...(opts.headers || {})};
  if (key) headers.authorization = `Bearer ${key}`;
  return {...opts, headers};
}

async function readError(r) {
  let body = null;
  try { body = await r.json(); } catch { body = {detail: r.statusText}; }
  if (r.status === 401) document.dispatchEvent(new CustomEvent("ragtune:unauthorized"));
  return new ApiError(r.status, body);
}

/** A JSON request; `json` is sent as the body. Throws ApiError with the server's detail. */
export async function api(path, {method = "GET", json, body, signal} = {}) {
  const opts = {method, signal};
  if (json !== undefined) {
    opts.headers = {"content-type": "application/json"};
    opts.body = JSON.stringify(json);
  } else if (body !== undefined) {
    opts.body = body;
  }
  const r = await fetch(path, withKey(opts));
  if (!r.ok) throw await readError(r);
  return r.status === 204 ? null : r.json();
}

/** A Server-Sent Events request (POST with `json`, or GET): calls onEvent(name, data) per event. */
export async function sse(path, {json, signal, onEvent}) {
  const opts = json === undefined ? {method: "GET", signal}
    : {method: "POST", signal, headers: {"content-type": "application/json"}, body: JSON.stringify(json)};
  const r = await fetch(path, withKey(opts));
  if (!r.ok) throw await readError(r);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buf += dec.decode(value, {stream: true});
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const name = (block.match(/^event: (.*)$/m) || [])[1] || "message";
      const raw = (block.match(/^data: (.*)$/m) || [])[1];
      if (raw !== undefined) onEvent(name, JSON.parse(raw));
    }
  }
}

/** An upload with real byte progress (fetch cannot report it): resolves with the JSON reply. */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const key = apiKey();
    if (key) xhr.setRequestHeader("authorization", `Bearer ${key}`);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new Error("the upload did not reach the server"));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = {detail: xhr.statusText}; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else {
        if (xhr.status === 401) document.dispatchEvent(new CustomEvent("ragtune:unauthorized"));
        reject(new ApiError(xhr.status, body));
      }
    };
    xhr.send(form);
  });
}

export const esc = (s) => String(s ?? "").replace(/[&<>"']/g,
  (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const fmt = (x, digits = 3) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits));

/** Show `err` in the error slot `slot` (an element), or clear it when `err` is null. */
export function showError(slot, err) {
  slot.textContent = err ? (err.message || String(err)) : "";
  slot.hidden = !err;
}

/**
 * Run `work` with `button` disabled and marked busy (a spinner and `label`), once at a time:
 * a second click while it runs does nothing. Errors go to the `slot` and are cleared on success.
 */
export async function busy(button, slot, work, label = "working…") {
  if (button.disabled || button.dataset.busy) return;
  const text = button.textContent;
  button.disabled = true;
  button.dataset.busy = "1";
  button.innerHTML = `<span class="spinner" aria-hidden="true"></span>${esc(label)}`;
  try {
    await work();
    if (slot) showError(slot, null);
  } catch (err) {
    if (slot) showError(slot, err);
    else throw err;
  } finally {
    button.textContent = text;
    button.disabled = false;
    delete button.dataset.busy;
  }
}

/** Wire a <form> so that submitting it (a click or Enter) runs `work` through busy(). */
export function onSubmit(form, work, label) {
  const button = form.querySelector("button[type=submit]");
  const slot = form.querySelector(".error");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(button, slot, () => work(form), label);
  });
}

/** An element from HTML text. */
export function html(text) {
  const t = document.createElement("template");
  t.innerHTML = text.trim();
  return t.content.firstElementChild;
}

/** The collection the page works on (chosen in the header), and the collections known. */
export const state = {collection: "", collections: []};
export const coll = (suffix = "") => `/v1/collections/${encodeURIComponent(state.collection)}${suffix}`;

/** The collection to act on, or an error that says to pick or create one. */
export function needCollection() {
  if (!state.collection) throw new Error("create or choose a collection first (Collections tab)");
  return state.collection;
}
