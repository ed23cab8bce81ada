// A page's set of training charts, kept across updates (a live run redraws the same charts,
// so hidden series and the readout stay as the user left them).
//
//   const curves = new Curves(box, {smoothing: 0.6, log: false});
//   curves.showRun(rows);                        // one run: loss, accuracy, margin, rewards, lr
//   curves.showRuns([{name, rows}, ...], keys);  // several runs overlaid, one chart per key
//   curves.setOptions({log: true});
import { LineChart } from "./chart.js";
import { CHART_GROUPS, el, seriesOf } from "./util.js";

export class Curves {
  constructor(box, options = {}) {
    this.box = box;
    this.options = { smoothing: 0.6, log: false, ...options };
    this.charts = new Map();
  }

  setOptions(options) {
    Object.assign(this.options, options);
    for (const chart of this.charts.values()) chart.setOptions(options);
  }

  chart(title) {
    let chart = this.charts.get(title);
    if (!chart) {
      this.placeholder?.remove();
      const panel = el("div", { class: "panel", "data-chart": title });
      this.box.append(panel);
      chart = new LineChart(panel, { title, ...this.options });
      this.charts.set(title, chart);
    }
    return chart;
  }

  /** One run's charts: a chart per metric group it logged; eval points as markers. */
  showRun(rows) {
    for (const group of CHART_GROUPS) {
      const series = group.keys
        .map((key) => ({ name: key, points: seriesOf(rows, key), markers: key.startsWith("eval/") }))
        .filter((s) => s.points.length);
      if (series.length) this.chart(group.title).setSeries(series);
    }
    if (!this.charts.size && !this.placeholder) {
      this.placeholder = el("p", { class: "muted" }, "No metrics logged yet.");
      this.box.replaceChildren(this.placeholder);
    }
  }

  /** ``runs`` (``{name, rows}``) overlaid, one chart per key in ``keys`` that any run logged. */
  showRuns(runs, keys) {
    for (const key of keys) {
      const series = runs.map((r) => ({ name: r.name, points: seriesOf(r.rows, key),
        markers: key.startsWith("eval/") && r.rows.filter((x) => key in x).length < 3,
        dashed: r.dashed }))
        .filter((s) => s.points.length);
      if (series.length) this.chart(key).setSeries(series);
    }
  }
}
