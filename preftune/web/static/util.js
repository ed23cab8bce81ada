// Small helpers every page shares: building DOM, formatting numbers and times, fetching JSON
// with the error message the server gave.

export { formatNumber as fmt } from "./chart.js";

/** ``el("a", {href: "x", class: "y"}, "text", child)``: an element with attributes and children
 * (strings become text, never HTML). ``on*`` attributes given functions become listeners. */
export function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") n.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(n.dataset, v);
    else n.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    n.append(c instanceof Node ? c : String(c));
  }
  return n;
}

/** "12 s ago", "3 min ago", "2 h ago", "4 d ago" for a Unix time in seconds. */
export function timeAgo(seconds) {
  if (!seconds) return "—";
  const d = Math.max(0, Date.now() / 1000 - seconds);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return `${Math.round(d / 86400)} d ago`;
}

/** A duration in seconds as "42 s", "3.5 min", "2.1 h". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** Fetch JSON; on an error status, throw an Error whose message is the server's own
 * (``{"error": {"message"}}`` or FastAPI's ``{"detail"}``), with ``status`` and ``param``. */
export async function getJSON(url, options = {}) {
  const response = await fetch(url, options);
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const err = body?.error || {};
    const detail = typeof body?.detail === "string" ? body.detail
      : Array.isArray(body?.detail) ? body.detail.map((d) => d.msg).join("; ") : null;
    const e = new Error(err.message || detail || `${response.status} ${response.statusText}`);
    e.status = response.status;
    e.param = err.param || null;
    e.hints = body?.hints || [];
    throw e;
  }
  return body;
}

/** Call ``fn`` now and then every ``ms`` while the page is open; returns a stop function. */
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    try { await fn(); } catch (e) { console.error(e); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

/** The metric names a training run logs, grouped into the charts a run page shows. */
export const CHART_GROUPS = [
  { title: "loss", keys: ["loss", "eval/loss"] },
  { title: "accuracy", keys: ["accuracy", "eval/accuracy"] },
  { title: "margin", keys: ["margin", "eval/margin"] },
  { title: "rewards", keys: ["chosen_reward", "rejected_reward", "eval/chosen_reward",
    "eval/rejected_reward", "mean_reward", "reward_std", "eval/mean_reward"] },
  { title: "KL and entropy", keys: ["kl", "entropy"] },
  { title: "clipped tokens", keys: ["clip_frac"] },
  { title: "learning rate", keys: ["learning_rate"] },
];

/** ``[[step, value], ...]`` of ``key`` over ``rows`` (rows without it skipped). */
export function seriesOf(rows, key) {
  const out = [];
  rows.forEach((row, i) => {
    const v = row[key];
    if (typeof v === "number") out.push([typeof row.step === "number" ? row.step : i, v]);
  });
  return out;
}
