// The runs list: every run with its status, algorithm, model, key hyperparameters, last
// metrics and diagnosis verdict; sweeps grouped; refreshed every few seconds.
import { el, every, fmt, getJSON, timeAgo } from "/static/util.js";

const selected = new Set(new URLSearchParams(location.search).getAll("id"));
let data = { runs: [], sweeps: [], dirs: [] };
const filter = document.getElementById("filter");
const status = document.getElementById("status");
const compareButton = document.getElementById("compare");

const PARAM_NAMES = { learning_rate: "lr", beta: "β", epochs: "ep", batch_size: "bs",
  grad_accum: "ga", lora_rank: "r", preset: "preset", group_size: "G", training_steps: "steps" };

function badge(value, prefix) {
  return value ? el("span", { class: `badge ${prefix}-${value}` }, value) : "—";
}

function matches(run) {
  const q = filter.value.trim().toLowerCase();
  if (status.value && run.status !== status.value) return false;
  if (!q) return true;
  return [run.id, run.model, run.algo, run.dataset, run.verdict].some(
    (v) => v && String(v).toLowerCase().includes(q));
}

function row(run) {
  const box = el("input", { type: "checkbox", "aria-label": `select ${run.id} to compare`,
    checked: selected.has(run.id), onchange: (e) => {
      if (e.target.checked) selected.add(run.id); else selected.delete(run.id);
      compareButton.disabled = selected.size < 2;
    } });
  const params = Object.entries(run.params)
    .filter(([k]) => k in PARAM_NAMES)
    .map(([k, v]) => `${PARAM_NAMES[k]} ${typeof v === "number" ? fmt(v) : v}`).join(" · ");
  const last = run.last;
  return el("tr", { "data-run": run.id, "data-status": run.status },
    el("td", {}, box),
    el("td", {}, el("a", { href: `/run?id=${encodeURIComponent(run.id)}` }, run.name),
      run.sweep ? el("div", { class: "muted small" }, run.id) : null),
    el("td", {}, badge(run.status, "status"),
      run.error ? el("div", { class: "error-text small", title: run.error },
        run.error.length > 60 ? `${run.error.slice(0, 60)}…` : run.error) : null),
    el("td", {}, run.algo || "—"),
    el("td", {}, run.model || "—"),
    el("td", { class: "small" }, params || "—"),
    el("td", {}, String(run.step)),
    el("td", {}, fmt(last.loss)),
    el("td", {}, fmt(last.accuracy ?? last.reward)),
    el("td", {}, fmt(last["eval/accuracy"])),
    el("td", {}, badge(run.verdict, "verdict")),
    el("td", { class: "muted small" }, timeAgo(run.updated)));
}

function table(runs) {
  const head = ["", "run", "status", "algorithm", "model", "hyperparameters", "step", "loss",
    "accuracy", "eval acc", "diagnosis", "updated"];
  return el("div", { class: "table-box" }, el("table", {},
    el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { scope: "col" },
      i === 0 ? el("span", { class: "visually-hidden" }, "select") : h)))),
    el("tbody", {}, runs.map(row))));
}

function render() {
  const box = document.getElementById("runs");
  document.getElementById("dirs").textContent = `Watching ${data.dirs.join(", ")}`;
  const shown = data.runs.filter(matches);
  if (!data.runs.length) {
    box.replaceChildren(el("p", { class: "notice" }, "No runs yet. Train one with ",
      el("code", {}, "preftune train --dataset FILE"), "; it appears here as it starts."));
    return;
  }
  const loose = shown.filter((r) => !r.sweep);
  const parts = [];
  if (loose.length) parts.push(table(loose));
  for (const sweep of data.sweeps) {
    const runs = shown.filter((r) => r.sweep === sweep.id);
    if (!runs.length) continue;
    const link = `/compare?${sweep.runs.map((id) => `id=${encodeURIComponent(id)}`).join("&")}`;
    parts.push(el("h2", {}, `Sweep ${sweep.name} `,
      el("a", { class: "small", href: link }, `compare its ${sweep.runs.length} runs`)),
      table(runs));
  }
  if (!parts.length) parts.push(el("p", { class: "muted" }, "No run matches the filter."));
  // Keep focus where it was across a refresh (keyboard users tick boxes while it updates).
  const focused = document.activeElement?.closest("tr")?.dataset.run;
  box.replaceChildren(...parts);
  if (focused) box.querySelector(`tr[data-run="${CSS.escape(focused)}"] input`)?.focus();
}

filter.addEventListener("input", render);
status.addEventListener("change", render);
compareButton.addEventListener("click", () => {
  location.href = `/compare?${[...selected].map((id) => `id=${encodeURIComponent(id)}`).join("&")}`;
});

let seen = "";
every(3000, async () => {
  data = await getJSON("/api/runs");
  const now = JSON.stringify(data);
  if (now !== seen) render();  // redraw only on change: focus and scroll stay put
  seen = now;
  compareButton.disabled = selected.size < 2;
  const running = data.runs.filter((r) => r.status === "running").length;
  document.getElementById("live").textContent =
    `${data.runs.length} runs${running ? `, ${running} running` : ""} · updated ${new Date().toLocaleTimeString()}`;
});
