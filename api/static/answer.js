// Asking (streamed answers, refusals, citations that open their passage) and searching.

import {$, api, coll, esc, fmt, html, needCollection, onSubmit, sse} from "./core.js";

/** Open the passage dialog on a cited or found chunk. */
export function openPassage(p, label) {
  $("#passageTitle").textContent = `${label} ${p.source}`;
  const page = p.page ? `page ${p.page}` : "no page number";
  const score = typeof p.score === "number" ? ` · score ${p.score.toFixed(3)}` : "";
  $("#passageMeta").textContent = `${page} · document ${p.doc_id} · chunk ${p.chunk_id}${score}`;
  $("#passageText").textContent = p.text;
  $("#passage").showModal();
}

const where = (c) => `${c.source}${c.page ? ` · p. ${c.page}` : ""}`;

function pill(text, kind = "", title = "") {
  return `<span class="pill ${kind}"${title ? ` title="${esc(title)}"` : ""}>${esc(text)}</span>`;
}

/** The answer's text with each [n] that names a citation made a button opening it. */
function answerHtml(answer, citations) {
  const byN = new Map(citations.map((c) => [c.n, c]));
  return esc(answer).replace(/\[(\d+)\]/g, (m, n) =>
    byN.has(Number(n)) ? `<button type="button" class="cite" data-n="${n}" title="${esc(where(byN.get(Number(n))))}">${m}</button>` : m);
}

function flagsHtml(d) {
  const parts = [];
  if (d.refused) {
    parts.push(pill("refused", "warn", "the service declined to answer from these documents"));
  } else {
    parts.push(d.grounded ? pill("grounded", "good", "the answer's words, numbers and names occur in the cited passages")
      : pill("not grounded", "bad", "the cited passages do not support enough of the answer: check it"));
    parts.push(pill(`support ${fmt(d.support_score, 2)}`, "", "share of the answer's words found in the cited passages"));
  }
  parts.push(d.answerable_score === null || d.answerable_score === undefined
    ? pill("answerability: not scored", "", "the answerability classifier did not run for this answer")
    : pill(`answerability ${fmt(d.answerable_score, 2)}`, "", "the classifier's estimate that the passages answer the question"));
  if (!d.refused) {
    parts.push(pill(`answered by ${d.adapter || "the base model"}`));
    parts.push(pill(`${d.passages} passage${d.passages === 1 ? "" : "s"} read`));
  }
  parts.push(screeningPill(d.screening));
  return parts.join("");
}

/** The offensive-text screen's verdict: which side it flagged, its score and what was done. */
export function screeningPill(s) {
  if (!s) return pill("screen: off", "", "RAGTUNE_SCREEN is off: questions and answers are not screened");
  const how = `screen ${s.screen}, action ${s.action}`;
  if (!s.flagged) return pill("screened: not offensive", "good", how);
  const sides = [["question", s.question], ["answer", s.answer]].filter(([, v]) => v && v.flagged)
    .map(([side, v]) => `${side} ${fmt(v.score, 2)}${v.terms.length ? ` (${v.terms.join(", ")})` : ""}`);
  const done = s.changed ? (s.action === "redact" ? "; redacted" : "; refused") : "";
  return pill(`offensive: ${sides.join(", ")}${done}`, "bad", how);
}

/** Render the final (`done`) answer into `box`: refusal as a refusal, citations that open. */
export function renderDone(box, d) {
  box.innerHTML = "";
  const answer = html(`<div class="answer${d.refused ? " refusal" : ""}" data-testid="answer"></div>`);
  if (d.refused) {
    const offensive = (d.refusal_reason || "").startsWith("offensive_");
    const head = offensive ? "Screened as offensive." : "No answer from these documents.";
    answer.innerHTML = `<strong>${head}</strong>\n${esc(d.answer)}`
      + (d.refusal_reason ? `\n<span class="meta">Why: ${esc(d.refusal_reason)}</span>` : "");
  } else {
    answer.innerHTML = answerHtml(d.answer, d.citations);
  }
  box.append(answer, html(`<div class="flags">${flagsHtml(d)}</div>`));
  if (d.citations.length) {
    const list = html(`<ol class="citations" aria-label="citations"></ol>`);
    for (const c of d.citations) {
      const li = html(`<li><button type="button" class="cite-open">[${c.n}] ${esc(where(c))}</button></li>`);
      li.firstElementChild.onclick = () => openPassage(c, `[${c.n}]`);
      list.append(li);
    }
    box.append(html(`<h3>Sources</h3>`), list);
  }
  answer.querySelectorAll("button.cite").forEach((b) => {
    b.onclick = () => { const c = d.citations.find((x) => x.n === Number(b.dataset.n)); openPassage(c, `[${c.n}]`); };
  });
}

/** Ask `body` of the current collection with SSE into `box`; resolves with the final answer. */
export async function askInto(box, body) {
  const path = coll("/ask");
  box.innerHTML = `<div class="working" data-testid="working"><span class="spinner"></span>working… finding passages and generating</div>`;
  let text = null;
  let final = null;
  await sse(path, {json: {...body, stream: true}, onEvent: (name, data) => {
    if (name === "token") {
      if (text === null) { box.innerHTML = ""; text = html(`<div class="answer streaming" data-testid="answer"></div>`); box.append(text); }
      text.textContent += data.text;
    } else if (name === "done") {
      final = data;
      renderDone(box, data);
    } else if (name === "error") {
      throw new Error(data.detail || "generation failed");
    }
  }});
  if (!final) throw new Error("the answer stream ended before its final event");
  return final;
}

function askBody(form) {
  const f = new FormData(form);
  const body = {question: f.get("question").trim(), k: Number(f.get("k") || 5)};
  if (f.get("adapter")) body.adapter = f.get("adapter");
  if (f.get("answer_style")) body.answer_style = f.get("answer_style");
  if (f.get("strict")) body.strict = true;
  if (f.get("rerank")) body.rerank = true;
  return body;
}

function renderHits(hits) {
  const out = $("#hits");
  out.innerHTML = hits.length ? "" : `<p class="meta">No passage matched.</p>`;
  hits.forEach((h, i) => {
    const el = html(`<div class="hit"><div class="meta">${i + 1}. <button type="button" class="small">${esc(where(h))}</button> · score ${h.score.toFixed(3)}</div><div class="text"></div></div>`);
    el.querySelector(".text").textContent = h.text.length > 400 ? `${h.text.slice(0, 400)}…` : h.text;
    el.querySelector("button").onclick = () => openPassage(h, `${i + 1}.`);
    out.append(el);
  });
}

export function initAnswers() {
  onSubmit($("#askForm"), async (form) => {
    needCollection();
    const box = $("#askOut");
    try {
      await askInto(box, askBody(form));
    } catch (err) {
      box.innerHTML = "";
      throw err;
    }
  }, "asking…");
  onSubmit($("#searchForm"), async (form) => {
    needCollection();
    const f = new FormData(form);
    const body = {query: f.get("query").trim(), k: Number(f.get("k") || 5)};
    if (f.get("mode")) body.mode = f.get("mode");
    if (f.get("rerank")) body.rerank = true;
    $("#hits").innerHTML = "";
    const r = await api(coll("/search"), {method: "POST", json: body});
    renderHits(r.hits);
  }, "searching…");
}
