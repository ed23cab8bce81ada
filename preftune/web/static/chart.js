// A small SVG line chart for training curves: several series over steps, smoothing (the
// debiased exponential moving average TensorBoard uses), a log-scale y axis, markers for eval
// points, a legend that shows and hides series (keyboard too), and a readout of the values
// nearest the pointer or the arrow keys. No dependencies; redraws when its box is resized.
//
//   const chart = new LineChart(box, {title: "loss", log: false, smoothing: 0.6});
//   chart.setSeries([{name: "train", points: [[step, value], ...], markers: false}]);
//   chart.setOptions({log: true});
//
// The <svg> carries data-points="N", the number of points drawn, for tests and tools.

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
  "#ca8a04", "#db2777", "#4b5563", "#65a30d"];

/** The debiased exponential moving average of ``values`` (weight in [0, 1); 0: unchanged). */
export function smooth(values, weight) {
  if (!weight) return values.slice();
  const out = [];
  let last = 0;
  let n = 0;
  for (const v of values) {
    if (!Number.isFinite(v)) { out.push(v); continue; }
    last = last * weight + (1 - weight) * v;
    n += 1;
    out.push(last / (1 - weight ** n));
  }
  return out;
}

/** About ``count`` round tick values covering [lo, hi]. */
function ticks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  }
  return out;
}

function logTicks(lo, hi) {
  const out = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const t = m * 10 ** e;
      if (t >= lo && t <= hi) out.push(t);
    }
  }
  return out.length > 1 ? out : [lo, hi];
}

export function formatNumber(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return Number(v.toPrecision(4)).toString();
}

function node(tag, attrs, parent) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
  if (parent) parent.appendChild(n);
  return n;
}

export class LineChart {
  constructor(container, options = {}) {
    this.box = container;
    this.options = { title: "", yLabel: "", log: false, smoothing: 0, height: 220, ...options };
    this.series = [];
    this.hidden = new Set();
    this.box.classList.add("chart");
    this.heading = document.createElement("div");
    this.heading.className = "chart-title";
    this.canvas = document.createElement("div");
    this.canvas.className = "chart-canvas";
    this.readout = document.createElement("div");
    this.readout.className = "chart-readout";
    this.readout.setAttribute("aria-live", "polite");
    this.legend = document.createElement("div");
    this.legend.className = "chart-legend";
    this.box.replaceChildren(this.heading, this.canvas, this.readout, this.legend);
    this.cursor = null;
    if (window.ResizeObserver) {
      let width = 0;
      new ResizeObserver(() => {
        if (this.canvas.clientWidth !== width) { width = this.canvas.clientWidth; this.draw(); }
      }).observe(this.canvas);
    }
  }

  setSeries(series) {
    this.series = series.map((s, i) => ({ color: PALETTE[i % PALETTE.length], ...s }));
    this.draw();
  }

  setOptions(options) {
    Object.assign(this.options, options);
    this.draw();
  }

  visible() {
    return this.series.filter((s) => !this.hidden.has(s.name));
  }

  draw() {
    const { log, smoothing, height } = this.options;
    this.heading.textContent = this.options.title;
    const width = Math.max(this.canvas.clientWidth || 600, 200);
    const pad = { left: 56, right: 12, top: 8, bottom: 26 };
    const svg = node("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      tabindex: "0", "aria-label": `${this.options.title} chart; arrow keys move the readout` });
    const keep = (p) => Number.isFinite(p[0]) && Number.isFinite(p[1]) && (!log || p[1] > 0);
    const shown = this.visible().map((s) => ({ ...s, points: s.points.filter(keep) }));
    const all = shown.flatMap((s) => s.points);
    svg.dataset.points = String(all.length);
    this.drawn = shown;
    if (all.length === 0) {
      const t = node("text", { x: width / 2, y: height / 2, "text-anchor": "middle",
        class: "chart-empty" }, svg);
      t.textContent = log && this.series.some((s) => s.points.length)
        ? "no positive values to show on a log scale" : "no points yet";
      this.canvas.replaceChildren(svg);
      this.drawLegend();
      return;
    }
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { const d = Math.abs(y0) * 0.1 || 1; y0 = log ? y0 / 2 : y0 - d; y1 += d; }
    const fy = log ? Math.log10 : (v) => v;
    const [ly0, ly1] = [fy(y0), fy(y1)];
    const margin = (ly1 - ly0) * 0.05;
    const X = (v) => pad.left + ((v - x0) / (x1 - x0)) * (width - pad.left - pad.right);
    const Y = (v) => height - pad.bottom
      - ((fy(v) - ly0 + margin) / (ly1 - ly0 + 2 * margin)) * (height - pad.top - pad.bottom);
    this.scale = { X, x0, x1, pad, width };

    const axis = node("g", { class: "chart-axis" }, svg);
    for (const t of log ? logTicks(y0, y1) : ticks(y0, y1, 4)) {
      node("line", { x1: pad.left, x2: width - pad.right, y1: Y(t), y2: Y(t),
        class: "chart-grid" }, axis);
      const label = node("text", { x: pad.left - 6, y: Y(t) + 4, "text-anchor": "end" }, axis);
      label.textContent = formatNumber(t);
    }
    for (const t of ticks(x0, x1, Math.max(2, Math.floor(width / 90)))) {
      const label = node("text", { x: X(t), y: height - 8, "text-anchor": "middle" }, axis);
      label.textContent = formatNumber(t);
    }
    node("line", { x1: pad.left, x2: pad.left, y1: pad.top, y2: height - pad.bottom,
      class: "chart-frame" }, axis);
    node("line", { x1: pad.left, x2: width - pad.right, y1: height - pad.bottom,
      y2: height - pad.bottom, class: "chart-frame" }, axis);

    for (const s of shown) {
      const g = node("g", { class: "chart-series", "data-name": s.name }, svg);
      const path = (pts) => pts.map((p, i) => `${i ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
      if (s.markers) {
        if (s.points.length > 1) {
          node("path", { d: path(s.points), fill: "none", stroke: s.color, "stroke-width": 1.5,
            "stroke-dasharray": "4 3" }, g);
        }
        for (const p of s.points) {
          node("circle", { cx: X(p[0]), cy: Y(p[1]), r: 3.5, fill: s.color }, g);
        }
        continue;
      }
      const dash = s.dashed ? { "stroke-dasharray": "6 4" } : {};
      if (smoothing > 0 && s.points.length > 2) {
        node("path", { d: path(s.points), fill: "none", stroke: s.color, "stroke-width": 1,
          opacity: 0.25, ...dash }, g);
        const sm = smooth(s.points.map((p) => p[1]), smoothing);
        const spts = s.points.map((p, i) => [p[0], sm[i]]).filter(keep);
        node("path", { d: path(spts), fill: "none", stroke: s.color, "stroke-width": 2, ...dash }, g);
      } else {
        node("path", { d: path(s.points), fill: "none", stroke: s.color, "stroke-width": 2,
          ...dash }, g);
        if (s.points.length === 1) {
          node("circle", { cx: X(s.points[0][0]), cy: Y(s.points[0][1]), r: 3, fill: s.color }, g);
        }
      }
    }
    this.marker = node("line", { y1: pad.top, y2: height - pad.bottom, class: "chart-cursor",
      visibility: "hidden" }, svg);
    svg.addEventListener("pointermove", (e) => {
      const rect = svg.getBoundingClientRect();
      this.pointAt(x0 + ((e.clientX - rect.left - pad.left) / (width - pad.left - pad.right)) * (x1 - x0));
    });
    svg.addEventListener("pointerleave", () => this.pointAt(null));
    svg.addEventListener("keydown", (e) => this.key(e, xs));
    this.canvas.replaceChildren(svg);
    this.svg = svg;
    if (this.cursor !== null) this.pointAt(this.cursor);
    this.drawLegend();
  }

  key(e, xs) {
    const steps = [...new Set(xs)].sort((a, b) => a - b);
    if (!steps.length || !["ArrowLeft", "ArrowRight", "Home", "End", "Escape"].includes(e.key)) return;
    e.preventDefault();
    if (e.key === "Escape") { this.pointAt(null); return; }
    let i = this.cursor === null ? steps.length - 1 : steps.findIndex((s) => s >= this.cursor);
    if (i < 0) i = steps.length - 1;
    if (e.key === "ArrowLeft") i = Math.max(0, i - 1);
    if (e.key === "ArrowRight") i = Math.min(steps.length - 1, i + 1);
    if (e.key === "Home") i = 0;
    if (e.key === "End") i = steps.length - 1;
    this.pointAt(steps[i]);
  }

  /** Show the values nearest step ``x`` (null: hide the readout). */
  pointAt(x) {
    this.cursor = x;
    if (x === null || !this.scale) {
      this.readout.textContent = "";
      if (this.marker) this.marker.setAttribute("visibility", "hidden");
      return;
    }
    const parts = [];
    let at = null;
    for (const s of this.drawn) {
      if (!s.points.length) continue;
      const best = s.points.reduce((a, p) => (Math.abs(p[0] - x) < Math.abs(a[0] - x) ? p : a));
      at = at === null ? best[0] : at;
      parts.push(`${s.name} ${formatNumber(best[1])}`);
    }
    if (at === null) return;
    const px = this.scale.X(at);
    this.marker.setAttribute("x1", px);
    this.marker.setAttribute("x2", px);
    this.marker.setAttribute("visibility", "visible");
    this.readout.textContent = `step ${formatNumber(at)}: ${parts.join(" · ")}`;
  }

  drawLegend() {
    const items = this.series.map((s) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "legend-item";
      b.setAttribute("aria-pressed", String(!this.hidden.has(s.name)));
      b.title = "show or hide this series";
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = s.color;
      b.append(swatch, s.name);
      b.addEventListener("click", () => {
        if (this.hidden.has(s.name)) this.hidden.delete(s.name); else this.hidden.add(s.name);
        this.draw();
        this.legend.querySelector(`[data-name="${CSS.escape(s.name)}"]`)?.focus();
      });
      b.dataset.name = s.name;
      return b;
    });
    this.legend.replaceChildren(...items);
  }
}
