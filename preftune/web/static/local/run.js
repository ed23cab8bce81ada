// One run: live curves (polled while it trains), its diagnosis and advice, checkpoints,
// config and model card.
import { Curves } from "/static/curves.js";
import { el, every, fmt, getJSON, timeAgo } from "/static/util.js";

const id = new URLSearchParams(location.search).get("id");
const smoothing = document.getElementById("smoothing");
const logScale = document.getElementById("log");
const curves = new Curves(document.getElementById("charts"),
  { smoothing: Number(smoothing.value), log: false });
let rows = [];
let next = 0;
let details = null;
let detailsAt = 0;

smoothing.addEventListener("input", () => {
  document.getElementById("smoothing-value").textContent = smoothing.value;
  curves.setOptions({ smoothing: Number(smoothing.value) });
});
logScale.addEventListener("change", () => curves.setOptions({ log: logScale.checked }));

function kv(pairs) {
  return el("dl", { class: "kv" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function renderSummary(d) {
  document.title = `${d.name} · preftune dashboard`;
  document.getElementById("title").replaceChildren(d.name, " ",
    el("span", { class: `badge status-${d.status}`, id: "run-status" }, d.status));
  document.getElementById("chat-link").href = `/chat?id=${encodeURIComponent(d.id)}`;
  const params = Object.entries(d.params).map(([k, v]) => `${k}=${typeof v === "number" ? fmt(v) : v}`);
  document.getElementById("summary").replaceChildren(
    d.error ? el("p", { class: "notice bad", role: "alert" }, `${d.status}: ${d.error}`) : "",
    kv([["run", d.id], ["algorithm", d.algo], ["model", d.model], ["data", d.dataset],
      ["hyperparameters", params.join(" · ")], ["step", String(d.step)],
      ["epoch", d.epoch === null ? null : fmt(d.epoch)],
      ["started", d.created], ["last written", timeAgo(d.updated)],
      ["sweep", d.sweep]]));
}

function renderDiagnosis(diagnosis) {
  const box = document.getElementById("diagnosis");
  if (!diagnosis) {
    box.replaceChildren(el("p", { class: "muted" }, "Not enough metrics to diagnose yet."));
    return;
  }
  box.replaceChildren(
    el("p", {}, el("span", { class: `badge verdict-${diagnosis.verdict}`, id: "verdict" },
      diagnosis.verdict), " ", diagnosis.summary),
    el("ul", { class: "findings" }, diagnosis.findings.map((f) => el("li", {},
      el("strong", {}, `${f.condition} (${f.severity})`),
      f.steps ? el("span", { class: "muted" }, ` steps ${f.steps[0]}–${f.steps[1]}`) : "",
      el("div", {}, f.evidence),
      f.advice.length ? el("ul", {}, f.advice.map((a) => el("li", {}, a))) : ""))));
}

function renderCheckpoints(d) {
  const box = document.getElementById("checkpoints");
  if (!d.checkpoints.length && !d.has_final) {
    box.replaceChildren(el("p", { class: "muted" }, "No checkpoint saved yet."));
    return;
  }
  const chat = (name) => el("a", { href: `/chat?id=${encodeURIComponent(d.id)}&checkpoint=${encodeURIComponent(name)}` }, "chat");
  const rowsOut = d.checkpoints.map((c) => el("tr", {},
    el("td", {}, c.name), el("td", {}, String(c.step)), el("td", {}, fmt(c.epoch)),
    el("td", { class: "small" }, c.model_path), el("td", {}, chat(c.name))));
  if (d.has_final) {
    rowsOut.push(el("tr", {}, el("td", {}, "final"), el("td", {}, String(d.step)), el("td", {}, "—"),
      el("td", { class: "small" }, "final/"), el("td", {}, chat("final"))));
  }
  box.replaceChildren(el("div", { class: "table-box" }, el("table", {},
    el("thead", {}, el("tr", {}, ["name", "step", "epoch", "path", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, rowsOut))));
}

function renderConfig(d) {
  const config = d.config?.config || {};
  const data = d.config?.data;
  document.getElementById("config").replaceChildren(
    data ? el("p", { class: "small muted" },
      `data: ${data.source ?? ""} · ${data.train?.pairs ?? data.train?.examples ?? "?"} training examples`
      + (data.eval ? ` · ${data.eval.pairs ?? data.eval.examples ?? "?"} eval` : "")) : "",
    el("details", {}, el("summary", {}, "config.json"),
      el("pre", {}, JSON.stringify(d.config, null, 2))));
  const keys = Object.keys(config).length;
  if (!keys) document.getElementById("config").prepend(el("p", { class: "muted" }, "No config.json."));
  document.getElementById("card").replaceChildren(d.card
    ? el("details", {}, el("summary", {}, "README.md (as preftune export writes it)"), el("pre", {}, d.card))
    : el("p", { class: "muted" }, "The model card is written once the run has its final model."));
}

async function refreshDetails() {
  details = await getJSON(`/api/run?id=${encodeURIComponent(id)}`);
  detailsAt = Date.now();
  renderSummary(details);
  renderDiagnosis(details.diagnosis);
  renderCheckpoints(details);
  renderConfig(details);
}

async function poll() {
  const got = await getJSON(`/api/metrics?id=${encodeURIComponent(id)}&after=${next}`);
  if (got.reset) rows = [];
  rows = rows.concat(got.rows);
  next = got.next;
  if (got.rows.length || got.reset || !curves.charts.size) curves.showRun(rows);
  const running = got.status === "running";
  if (!details || details.status !== got.status || (running && Date.now() - detailsAt > 5000)) {
    await refreshDetails();
  }
  document.getElementById("live").textContent = running
    ? `live · ${rows.length} rows · ${new Date().toLocaleTimeString()}` : `${rows.length} rows`;
}

if (!id) {
  document.getElementById("main").replaceChildren(el("p", { class: "notice bad" },
    "No run given: open a run from the ", el("a", { href: "/" }, "runs list"), "."));
} else {
  every(2000, async () => {
    try {
      await poll();
    } catch (e) {
      document.getElementById("summary").replaceChildren(el("p", { class: "notice bad", role: "alert" }, e.message));
    }
  });
}
