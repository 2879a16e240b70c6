// The page's entry point: tabs, the API key, and loading each tab's data when it is shown.

import {$, $$, apiKey, onSubmit, setApiKey, showError} from "./core.js";
import {initAnswers} from "./answer.js";
import {initKb, loadCollections} from "./kb.js";
import {initModels, loadAdapters, loadEvals} from "./models.js";
import {initTasks, loadTasks} from "./tasks.js";
import {initTuning, loadTuning} from "./tune.js";

const LOADERS = {
  ask: loadAdapters, adapters: loadAdapters, tuning: loadTuning, evals: loadEvals, tasks: loadTasks,
};

const fail = (err) => showError($("#globalError"), err);
let current = "ask";

function show(tab) {
  current = tab;
  for (const b of $$("nav [role=tab]")) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
  for (const p of $$("[role=tabpanel]")) p.hidden = p.id !== `tab-${tab}`;
  if (location.hash !== `#${tab}`) history.replaceState(null, "", `#${tab}`);
  const load = LOADERS[tab];
  if (load) load().then(() => showError($("#globalError"), null)).catch(fail);
}

function showWho() {
  $("#who").textContent = apiKey() ? "API key: signed in" : "API key";
}

async function refresh() {
  await loadCollections();
  showError($("#globalError"), null);
}

function init() {
  for (const b of $$("nav [role=tab]")) b.onclick = () => show(b.dataset.tab);
  onSubmit($("#keyForm"), async (form) => {
    const key = form.apiKey.value.trim();
    if (!key) throw new Error("paste a key first (rt_…)");
    setApiKey(key);
    form.apiKey.value = "";
    showWho();
    await refresh();
    show(current);
    $("#keyBox").open = false;
  }, "signing in…");
  $("#signOut").onclick = () => { setApiKey(""); showWho(); };
  document.addEventListener("ragtune:unauthorized", () => {
    $("#keyBox").open = true;
    showError($("#keyForm .error"), new Error(apiKey() ? "this key was refused: paste a valid one"
      : "this server needs an API key: paste one (ragtune keys create)"));
  });
  initKb();
  initAnswers();
  initTuning();
  initModels();
  initTasks();
  showWho();
  const first = location.hash.slice(1);
  show(first && document.getElementById(`tab-${first}`) ? first : "ask");
  refresh().catch(fail);
}

init();
