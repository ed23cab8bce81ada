// Several runs side by side: the `preftune compare` table with the best run marked, and their
// curves overlaid. The runs come from the URL (?id=a&id=b), picked on the runs list or here.
import { Curves } from "/static/curves.js";
import { el, getJSON } from "/static/util.js";

const params = new URLSearchParams(location.search);
let ids = params.getAll("id");
const metric = document.getElementById("metric");
const smoothing = document.getElementById("smoothing");
const logScale = document.getElementById("log");
if (params.get("metric")) metric.value = params.get("metric");
const curves = new Curves(document.getElementById("charts"), { smoothing: Number(smoothing.value) });
const KEYS = ["loss", "eval/loss", "accuracy", "eval/accuracy", "margin", "eval/margin",
  "chosen_reward", "rejected_reward", "lr"];

smoothing.addEventListener("input", () => {
  document.getElementById("smoothing-value").textContent = smoothing.value;
  curves.setOptions({ smoothing: Number(smoothing.value) });
});
logScale.addEventListener("change", () => curves.setOptions({ log: logScale.checked }));
metric.addEventListener("change", () => { setUrl(); load(); });

function setUrl() {
  const q = new URLSearchParams(ids.map((i) => ["id", i]));
  q.set("metric", metric.value);
  history.replaceState(null, "", `/compare?${q}`);
}

async function picker() {
  const { runs } = await getJSON("/api/runs");
  const box = document.getElementById("picker");
  const fieldset = el("fieldset", { class: "panel" }, el("legend", {}, "Runs to compare"),
    el("div", { class: "row" }, runs.map((r) => el("label", {},
      el("input", { type: "checkbox", value: r.id, checked: ids.includes(r.id) }), ` ${r.id}`))),
    el("div", { class: "row" }, el("button", { type: "button", class: "primary", onclick: () => {
      ids = [...fieldset.querySelectorAll("input:checked")].map((i) => i.value);
      setUrl();
      load();
    } }, "Compare")));
  box.replaceChildren(el("details", { open: ids.length < 2 }, el("summary", {}, "Choose runs"), fieldset));
}

async function load() {
  const sentence = document.getElementById("sentence");
  const tableBox = document.getElementById("table");
  if (ids.length < 2) {
    sentence.hidden = true;
    tableBox.replaceChildren(el("p", { class: "muted" }, "Pick two runs or more."));
    return;
  }
  let c;
  try {
    c = await getJSON(`/api/compare?${ids.map((i) => `id=${encodeURIComponent(i)}`).join("&")}&metric=${encodeURIComponent(metric.value)}`);
  } catch (e) {
    tableBox.replaceChildren(el("p", { class: "notice bad", role: "alert" }, e.message));
    return;
  }
  sentence.hidden = false;
  sentence.textContent = c.sentence;
  const { headers, rows } = c.table;
  tableBox.replaceChildren(el("div", { class: "table-box" }, el("table", { id: "comparison" },
    el("caption", { class: "visually-hidden" }, `runs ranked by ${c.metric}`),
    el("thead", {}, el("tr", {}, el("th", {}, ""), headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((cells, i) => {
      const run = c.runs[i];
      const best = run.id === c.best_id;
      return el("tr", { class: best ? "best" : "", "data-run": run.id, "data-best": best ? "true" : "false" },
        el("td", {}, best ? el("strong", {}, "★ best") : ""),
        cells.map((cell, j) => el("td", {}, j === 0 && run.id
          ? el("a", { href: `/run?id=${encodeURIComponent(run.id)}` }, cell) : cell)));
    })))));
  const series = await Promise.all(c.runs.map(async (r) => {
    const m = await getJSON(`/api/metrics?id=${encodeURIComponent(r.id)}`);
    return { name: r.id === c.best_id ? `${r.name} ★` : r.name, rows: m.rows };
  }));
  curves.box.replaceChildren();
  curves.charts.clear();
  curves.showRuns(series, KEYS);
}

picker();
load();
