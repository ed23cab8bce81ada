// #/jobs/<id>: one job as it runs: status and details, its events, live curves from its
// metrics rows, cancel / pause / resume, checkpoints and the final model to download.
import { Curves } from "/ui/static/curves.js";
import { el, every, fmt, timeAgo } from "/ui/static/util.js";
import { api, download } from "/ui/api.js";
import { statusBadge } from "/ui/jobs.js";

const ENDED = new Set(["succeeded", "failed", "cancelled"]);
// What each button may do in each status (the queue refuses the rest with 409).
const ACTIONS = {
  cancel: (s) => !ENDED.has(s),
  pause: (s) => s === "queued" || s === "running",
  resume: (s) => s === "paused",
};

function kv(pairs) {
  return el("dl", { class: "kv" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function when(seconds) {
  return seconds ? `${new Date(seconds * 1000).toLocaleString()} (${timeAgo(seconds)})` : null;
}

export function jobView(main, id) {
  document.title = `${id} · preftune`;
  const title = el("h1", {}, id);
  const notice = el("div", { id: "notice", "aria-live": "polite" });
  const summary = el("div", { id: "summary" });
  const buttons = Object.fromEntries(Object.keys(ACTIONS).map((action) => [action,
    el("button", { type: "button", id: `${action}-job`, disabled: true,
      onclick: () => act(action) }, action[0].toUpperCase() + action.slice(1))]));
  const modelButton = el("button", { type: "button", id: "download-model", hidden: true,
    onclick: () => save(`/v1/fine_tuning/jobs/${id}/content`, `${id}-final.tar.gz`) },
  "Download model");
  const smoothing = el("input", { id: "smoothing", type: "range", min: "0", max: "0.99",
    step: "0.01", value: "0.6" });
  const smoothingValue = el("output", { for: "smoothing" }, "0.6");
  const logScale = el("input", { id: "log", type: "checkbox" });
  const charts = el("div", { class: "grid", id: "charts" });
  const curves = new Curves(charts, { smoothing: 0.6, log: false });
  const checkpoints = el("div", { id: "checkpoints" });
  const events = el("div", { id: "events" });
  smoothing.addEventListener("input", () => {
    smoothingValue.textContent = smoothing.value;
    curves.setOptions({ smoothing: Number(smoothing.value) });
  });
  logScale.addEventListener("change", () => curves.setOptions({ log: logScale.checked }));
  main.replaceChildren(title, notice, summary,
    el("div", { class: "actions", role: "group", "aria-label": "Job actions" },
      ...Object.values(buttons), modelButton),
    el("section", { "aria-labelledby": "curves-h" }, el("h2", { id: "curves-h" }, "Curves"),
      el("div", { class: "controls", role: "group", "aria-label": "Chart settings" },
        el("label", {}, "Smoothing ", smoothing, smoothingValue),
        el("label", {}, logScale, " Log scale")),
      charts),
    el("section", { "aria-labelledby": "checkpoints-h" },
      el("h2", { id: "checkpoints-h" }, "Checkpoints"), checkpoints),
    el("section", { "aria-labelledby": "events-h" }, el("h2", { id: "events-h" }, "Events"), events));

  let job = null;
  let rows = [];
  let offset = 0;
  let evalOffset = 0;  // a reinforcement job's eval reward rows, read separately
  let lastCheckpoints = "";
  let ended = false;

  function say(message, kind = "") {
    notice.replaceChildren(message ? el("p", { class: `notice ${kind}`, role: kind === "bad" ? "alert" : null }, message) : "");
  }

  async function save(path, filename) {
    try {
      await download(path, filename);
    } catch (e) {
      say(`Download failed: ${e.message}`, "bad");
    }
  }

  async function act(action) {
    buttons[action].disabled = true;
    try {
      job = await api(`/v1/fine_tuning/jobs/${id}/${action}`, { method: "POST" });
      say(`${action[0].toUpperCase() + action.slice(1)} requested: the job is ${job.status}.`, "ok");
      renderJob();
    } catch (e) {
      say(e.message, "bad");
    }
  }

  function renderJob() {
    title.replaceChildren(id, " ", el("span", { id: "job-status" }, statusBadge(job.status)));
    const hyper = job.method?.[job.method?.type]?.hyperparameters || {};
    summary.replaceChildren(
      job.error ? el("div", { class: "notice bad", role: "alert", id: "job-error" },
        el("strong", {}, `failed: ${job.error.code}`),
        job.error.param ? ` (${job.error.param})` : "",
        el("pre", { class: "pre-wrap" }, job.error.message)) : "",
      kv([["model", job.model], ["method", job.method?.type || "dpo"],
        ["hyperparameters", Object.entries(hyper).map(([k, v]) => `${k}=${typeof v === "number" ? fmt(v) : v}`).join(" · ")],
        ["training file", job.training_file], ["validation file", job.validation_file],
        ["created", when(job.created_at)], ["finished", when(job.finished_at)],
        ["fine-tuned model", job.fine_tuned_model], ["attempt", String(job.attempt)],
        ["trained tokens", job.trained_tokens === null ? null : String(job.trained_tokens)]]));
    for (const [action, allowed] of Object.entries(ACTIONS)) {
      buttons[action].disabled = !allowed(job.status);
    }
    modelButton.hidden = job.status !== "succeeded";
  }

  function renderCheckpoints(list) {
    const key = JSON.stringify(list.map((c) => c.id));
    if (key === lastCheckpoints) return;
    lastCheckpoints = key;
    if (!list.length) {
      checkpoints.replaceChildren(el("p", { class: "muted" }, "No checkpoint saved yet."));
      return;
    }
    checkpoints.replaceChildren(el("div", { class: "table-box" }, el("table", {},
      el("thead", {}, el("tr", {}, ["step", "saved", "train loss", "model"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, list.map((c) => el("tr", {},
        el("td", {}, String(c.step_number)), el("td", {}, timeAgo(c.created_at)),
        el("td", {}, fmt(c.metrics.train_loss)),
        el("td", {}, el("button", { type: "button", class: "download-checkpoint",
          "data-step": String(c.step_number),
          onclick: () => save(`/v1/fine_tuning/jobs/${id}/checkpoints/${c.id}/content`,
            `${id}-step-${c.step_number}.tar.gz`) }, `Download step ${c.step_number}`))))))));
  }

  function renderEvents(list) {
    events.replaceChildren(list.length ? el("div", { class: "table-box events" }, el("table", {},
      el("thead", {}, el("tr", {}, ["time", "level", "message"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, list.map((e) => el("tr", { class: `level-${e.level}` },
        el("td", { title: new Date(e.created_at * 1000).toLocaleString() },
          new Date(e.created_at * 1000).toLocaleTimeString()),
        el("td", {}, e.level), el("td", { class: "wrap" }, e.message))))))
      : el("p", { class: "muted" }, "No events yet."));
  }

  async function poll() {
    if (ended) return;
    job = await api(`/v1/fine_tuning/jobs/${id}`);
    renderJob();
    const [page, eventList, checkpointList] = await Promise.all([
      api(`/v1/fine_tuning/jobs/${id}/metrics?offset=${offset}&eval_offset=${evalOffset}`),
      api(`/v1/fine_tuning/jobs/${id}/events?limit=100`),
      api(`/v1/fine_tuning/jobs/${id}/checkpoints?limit=100`)]);
    if (page.data.length) {
      if (!rows.length) charts.replaceChildren();  // the placeholder goes
      rows = rows.concat(page.data);
      offset = page.next_offset;
      evalOffset = page.next_eval_offset;
      curves.showRun(rows);
    } else if (!rows.length) {
      charts.replaceChildren(el("p", { class: "muted" }, ENDED.has(job.status)
        ? "This job logged no metrics." : "No metrics logged yet: curves appear with the first logged step."));
    }
    renderEvents(eventList.data);
    renderCheckpoints(checkpointList.data);
    document.getElementById("live").textContent = ENDED.has(job.status)
      ? `job ${job.status}` : `live · updated ${new Date().toLocaleTimeString()}`;
    // An ended job changes no more: one last read (rows written just before the end) is enough.
    ended = ENDED.has(job.status) && !page.has_more;
  }

  const stopPolling = every(2000, async () => {
    try {
      await poll();
    } catch (e) {
      if (e.status === 404) {
        ended = true;
        main.replaceChildren(el("h1", {}, "No such job"),
          el("p", { class: "notice bad", role: "alert" }, e.message),
          el("p", {}, el("a", { href: "#/jobs" }, "Back to your jobs")));
      } else {
        say(e.message, "bad");
      }
    }
  });
  return stopPolling;
}
