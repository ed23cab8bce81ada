// #/jobs: the tenant's jobs, newest first, refreshed every 2 s: status, model, method,
// created, and progress (from the newest metrics event of a running or paused job).
import { el, every, timeAgo } from "/ui/static/util.js";
import { api } from "/ui/api.js";

const ACTIVE = new Set(["running", "paused"]);

export function statusBadge(status) {
  return el("span", { class: `badge status-${status}` }, status.replace("_", " "));
}

/** The share of the job done, from a metrics row: steps of max_steps, else epochs. */
export function progressOf(job, row) {
  if (job.status === "succeeded") return 1;
  if (!row) return null;
  const config = job.config || {};
  if (config.max_steps) return Math.min(1, row.step / config.max_steps);
  if (config.epochs && typeof row.epoch === "number") return Math.min(1, row.epoch / config.epochs);
  return null;
}

function progressCell(job, row) {
  const share = progressOf(job, row);
  if (share === null) return el("td", { class: "muted" }, "—");
  const percent = Math.round(share * 100);
  return el("td", {},
    el("span", { class: "progress", role: "img", "aria-label": `${percent}%` },
      el("span", { style: `width: ${percent}%` })),
    row ? `step ${row.step} · ${percent}%` : `${percent}%`);
}

async function latestMetrics(job) {
  const events = await api(`/v1/fine_tuning/jobs/${job.id}/events?limit=20`);
  return events.data.find((e) => e.type === "metrics" && e.data
    && !Object.keys(e.data).some((k) => k.startsWith("eval/")))?.data;
}

export function jobsView(main) {
  document.title = "Jobs · preftune";
  const box = el("div", { id: "jobs" }, el("p", { class: "muted" }, "Loading…"));
  main.replaceChildren(
    el("div", { class: "row" }, el("h1", {}, "Jobs"), el("span", { class: "spacer" }),
      el("a", { class: "button primary", href: "#/new" }, "New job")),
    box);
  const progress = new Map();  // job id -> its newest metrics row
  return every(2000, async () => {
    const jobs = (await api("/v1/fine_tuning/jobs?limit=100")).data;
    await Promise.all(jobs.filter((j) => ACTIVE.has(j.status)).map(async (job) => {
      progress.set(job.id, await latestMetrics(job));
    }));
    document.getElementById("live").textContent = `updated ${new Date().toLocaleTimeString()}`;
    if (!jobs.length) {
      box.replaceChildren(el("p", { class: "notice", id: "no-jobs" }, "No jobs yet. ",
        el("a", { href: "#/new" }, "Create one"), " from a file of preference pairs."));
      return;
    }
    box.replaceChildren(el("div", { class: "table-box" }, el("table", {},
      el("caption", { class: "visually-hidden" }, "Your organization's jobs, newest first"),
      el("thead", {}, el("tr", {}, ["job", "status", "model", "method", "created", "progress"]
        .map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, jobs.map((job) => el("tr", { "data-job": job.id },
        el("td", {}, el("a", { href: `#/jobs/${job.id}` }, job.id)),
        el("td", {}, statusBadge(job.status)),
        el("td", {}, job.model),
        el("td", {}, job.method?.type || "dpo"),
        el("td", { title: new Date(job.created_at * 1000).toLocaleString() }, timeAgo(job.created_at)),
        progressCell(job, progress.get(job.id))))))));
  });
}
