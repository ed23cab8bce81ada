"""Several runs side by side: the hyperparameters that differ, final and best scores, cost,
diagnosis, and which run is best by one metric. ``write_report`` adds overlay charts and a
self-contained ``report.html``.

Input is a sweep directory (its manifest's runs, or every run under ``runs/``) or run
directories. Runs are ranked by the *final* value of the metric, the one the model in
``final/`` has: the best value along the way is shown beside it but picks a step whose model
may not have been kept.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from preftune.errors import UsageError
from preftune.fsutil import write_text
from preftune.rundir import CONFIG, METRICS, RunDir, is_run_dir
from preftune.runs.plots import plot_runs
from preftune.runs.sweep import MANIFEST

DIAGNOSIS = "diagnosis.json"
NO_VALUE = "—"

# Config keys that name, log or save a run but do not change what it learns.
_BOOKKEEPING = frozenset({"output_dir", "exp_name", "report_to", "wandb_project", "wandb_name",
                          "logging_steps", "eval_steps", "save_steps", "save_total_limit"})
# A metric whose name contains one of these is better when lower; any other, when higher.
_LOWER_IS_BETTER = ("loss", "perplexity", "grad_norm", "memory", "rejected")
# A config.json written more than this long after its "created" time was copied or rewritten,
# so its directory's file times no longer tell how long the run took.
_CREATED_TOLERANCE_S = 60.0


@dataclass
class RunSummary:
    """One row of a comparison."""

    name: str
    path: Path
    params: dict[str, Any]  # the hyperparameters that differ across the compared runs
    final: dict[str, float]  # last logged value: eval/accuracy, eval/loss, eval/margin, loss, ...
    best: dict[str, float]  # eval/accuracy (max) and eval/accuracy_step; eval/loss (min), _step
    wall_seconds: float | None  # config.json "created" → metrics.jsonl mtime; see _wall_seconds
    tokens_per_second: float | None  # median over the train rows
    diagnosis: str  # verdict from diagnosis.json, or NO_VALUE
    diagnosis_summary: str = ""


@dataclass
class Comparison:
    runs: list[RunSummary]  # best first; runs that did not log the metric last, by name
    metric: str
    higher_is_better: bool
    best: RunSummary | None
    runner_up: RunSummary | None
    gap: float | None  # how far the best is ahead of the runner-up (>= 0)
    shared: dict[str, Any] = field(default_factory=dict)  # hyperparameters all runs share
    sweep: str | None = None  # the sweep's name, when compared from a sweep directory

    def score(self, run: RunSummary) -> float | None:
        return run.final.get(self.metric)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; runs referred to by name."""
        data = asdict(self)
        for row in data["runs"]:
            row["path"] = str(row["path"])
        data["best"] = self.best.name if self.best else None
        data["runner_up"] = self.runner_up.name if self.runner_up else None
        return data


TIEBREAK = "eval/loss"


def compare_runs(paths: Sequence[Path], metric: str = "eval/accuracy",
                 higher_is_better: bool | None = None) -> Comparison:
    """Summarise and rank the runs in ``paths``: one sweep directory, or run directories.

    ``higher_is_better`` None decides by the metric's name (lower for losses). Runs that
    never logged the metric rank last; ties go to the lower final eval loss, then the name.
    """
    named, sweep = find_runs(paths)
    records = [_read_config(path) for _, path in named]
    configs = [_hyperparameters(r) for r in records]
    differing = [k for k in _keys(configs) if len({_key(c.get(k)) for c in configs}) > 1]
    runs = [_summarise(name, path, record, {k: config.get(k) for k in differing}, metric)
            for (name, path), record, config in zip(named, records, configs, strict=True)]
    higher = _higher_is_better(metric) if higher_is_better is None else higher_is_better

    def rank(run: RunSummary) -> tuple[bool, float, float, str]:
        value = run.final.get(metric)
        # Equal scores (common: accuracy over a small eval set) go to the lower eval loss.
        tiebreak = run.final.get(TIEBREAK, math.inf) if metric != TIEBREAK else 0.0
        if value is None:
            return True, 0.0, tiebreak, run.name
        return False, -value if higher else value, tiebreak, run.name

    runs.sort(key=rank)
    scored = [r for r in runs if metric in r.final]
    best = scored[0] if scored else None
    runner_up = scored[1] if len(scored) > 1 else None
    gap = (abs(best.final[metric] - runner_up.final[metric])
           if best is not None and runner_up is not None else None)
    shared = {k: v for k, v in configs[0].items() if k not in differing}
    return Comparison(runs, metric, higher, best, runner_up, gap, shared, sweep)


def is_sweep_dir(path: Path) -> bool:
    """A directory ``preftune sweep`` wrote (a manifest), or one holding runs under ``runs/``."""
    return not is_run_dir(path) and ((path / MANIFEST).is_file() or (path / "runs").is_dir())


def find_runs(paths: Sequence[Path]) -> tuple[list[tuple[str, Path]], str | None]:
    """``(name, run directory)`` pairs to compare, and the sweep's name when given a sweep."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise UsageError("no runs to compare", ["pass a sweep directory, or run directories"])
    if len(paths) == 1 and is_sweep_dir(paths[0]):
        return _sweep_runs(paths[0])
    for path in paths:
        if is_sweep_dir(path):
            raise UsageError(f"{path} is a sweep directory; compare one sweep at a time",
                             [f"preftune compare {path}", "or pass the run directories "
                              f"themselves, e.g. {path}/runs/*"])
        if not is_run_dir(path):
            what = "does not exist" if not path.exists() else \
                f"has no {CONFIG} and {METRICS}" if path.is_dir() else "is not a directory"
            raise UsageError(f"{path} {what}; it is not a training run directory", [
                "pass directories made by preftune train, or one sweep directory"])
    names = [p.resolve().name for p in paths]
    if len(set(names)) < len(names):  # same-named runs under different parents
        names = [f"{p.resolve().parent.name}/{p.resolve().name}" for p in paths]
    return list(zip(names, paths, strict=True)), None


def _sweep_runs(sweep: Path) -> tuple[list[tuple[str, Path]], str | None]:
    """The manifest's runs that have started logging; without a manifest, every run in runs/."""
    manifest = sweep / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            rows = [(str(r["name"]), sweep / r["path"]) for r in data["runs"]]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UsageError(f"cannot read {manifest}: {e}", [
                "it should hold runs: [{name, path, params, status}], as preftune sweep "
                "writes it", f"or move it aside to compare every run under {sweep}/runs"]) from e
        name = str(data.get("name") or sweep.name)
    else:
        rows = sorted((d.name, d) for d in (sweep / "runs").iterdir() if d.is_dir())
        name = sweep.name
    found = [(n, p) for n, p in rows if is_run_dir(p)]
    if not found:
        raise UsageError(f"no runs with metrics in the sweep {sweep}",
                         ["the sweep has not started a run yet: run or resume it with "
                          "preftune sweep", "or pass run directories instead"])
    return found, name


def _read_config(path: Path) -> dict[str, Any]:
    config_path = path / CONFIG
    try:
        record = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UsageError(f"{config_path} is not valid JSON (line {e.lineno}): {e.msg}",
                         ["it is written by preftune train; restore it from the run's "
                          "source, or leave this run out"]) from e
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise UsageError(f"{config_path} has no \"config\" object",
                         ["preftune train writes {\"config\": {...}, \"created\": ...}; "
                          "leave this run out"])
    return record


def _hyperparameters(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record["config"].items() if k not in _BOOKKEEPING}


def _keys(configs: list[dict[str, Any]]) -> list[str]:
    """Every key of every config, in the order the configs list them."""
    return list(dict.fromkeys(k for c in configs for k in c))


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _higher_is_better(metric: str) -> bool:
    return not any(word in metric for word in _LOWER_IS_BETTER)


def _summarise(name: str, path: Path, record: dict[str, Any], params: dict[str, Any],
               metric: str) -> RunSummary:
    rows = RunDir(path).metrics()
    final = {m: v for m in ("eval/accuracy", "eval/loss", "eval/margin", "loss", "accuracy",
                            metric) if (v := _last(rows, m)) is not None}
    best: dict[str, float] = {}
    for m, pick in (("eval/accuracy", max), ("eval/loss", min)):
        points = [(r[m], r.get("step", 0)) for r in rows if _is_number(r.get(m))]
        if points:
            value = pick(p[0] for p in points)
            best[m] = value
            best[f"{m}_step"] = next(s for v, s in points if v == value)  # the first to reach it
    speeds = [r["tokens_per_second"] for r in rows if _is_number(r.get("tokens_per_second"))]
    verdict, summary = _diagnosis(path)
    return RunSummary(name, path, params, final, best, _wall_seconds(path, record),
                      statistics.median(speeds) if speeds else None, verdict, summary)


def _last(rows: list[dict[str, Any]], metric: str) -> float | None:
    return next((float(r[metric]) for r in reversed(rows) if _is_number(r.get(metric))), None)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _wall_seconds(path: Path, record: dict[str, Any]) -> float | None:
    """Seconds from the run's start to its last metrics row, on the clock.

    The start is config.json's ``created``; the end is the modification time of metrics.jsonl,
    which every logged row updates. Reference log-probs, evaluation and any time a resumed run
    spent stopped are included. Step times are not logged, and the throughput rows cannot be
    turned back into seconds without the process count, so this is the only whole-run source.
    None when it cannot be trusted: no ``created``, or a config.json whose own mtime is not its
    ``created`` time (the directory was copied without its file times, or the file rewritten).
    """
    try:
        created = datetime.fromisoformat(str(record["created"])).timestamp()
        config_mtime = os.stat(path / CONFIG).st_mtime
        end = os.stat(path / METRICS).st_mtime
    except (KeyError, ValueError, OSError):
        return None
    if abs(config_mtime - created) > _CREATED_TOLERANCE_S or end < created:
        return None
    return end - created


def _diagnosis(path: Path) -> tuple[str, str]:
    """The verdict and one-line summary of diagnosis.json; NO_VALUE when there is none."""
    diagnosis_path = path / DIAGNOSIS
    if not diagnosis_path.is_file():
        return NO_VALUE, ""
    try:
        data = json.loads(diagnosis_path.read_text(encoding="utf-8"))
        return str(data.get("verdict") or NO_VALUE), str(data.get("summary") or "")
    except (json.JSONDecodeError, AttributeError, OSError) as e:
        return NO_VALUE, f"{DIAGNOSIS} could not be read: {e}"


# ------------------------------------------------------------------------------ formatting


def format_value(value: float | None) -> str:
    """Three decimals below 10 (accuracies, losses and margins line up), fewer above."""
    if value is None:
        return NO_VALUE
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


def format_param(value: Any) -> str:
    """A hyperparameter as a table shows it: a path or hub id by its last part."""
    if isinstance(value, str) and "/" in value:
        return value.rstrip("/").rsplit("/", 1)[-1]
    if isinstance(value, float):
        return f"{value:g}"
    return NO_VALUE if value is None else str(value)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return NO_VALUE
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def best_sentence(comparison: Comparison) -> str:
    """``best by eval/accuracy: beta0.1 (0.920); runner-up: beta0.05 (0.880), gap 0.040``."""
    c = comparison
    if c.best is None:
        return f"no run has logged {c.metric} yet, so none is ranked"
    text = f"best by {c.metric}: {c.best.name} ({format_value(c.score(c.best))})"
    if c.runner_up is None:
        return text
    if c.gap:
        return (text + f"; runner-up: {c.runner_up.name} "
                f"({format_value(c.score(c.runner_up))}), gap {format_value(c.gap)}")
    # A tie: say what decided it, so an equal score does not read as a win.
    text += f"; tied with {c.runner_up.name}"
    ours, theirs = c.best.final.get(TIEBREAK), c.runner_up.final.get(TIEBREAK)
    if c.metric != TIEBREAK and ours is not None and ours != theirs:
        return (text + f", lower {TIEBREAK} decides ({format_value(ours)} against "
                f"{format_value(theirs) if theirs is not None else 'none logged'})")
    return text + ", ranked by name"


# --------------------------------------------------------------------------------- report

# (column title, how to get the cell text from a run)
_COLUMNS = (
    ("final eval acc", lambda r: format_value(r.final.get("eval/accuracy"))),
    ("best eval acc (step)", lambda r: _with_step(r.best, "eval/accuracy")),
    ("final eval loss", lambda r: format_value(r.final.get("eval/loss"))),
    ("final eval margin", lambda r: format_value(r.final.get("eval/margin"))),
    ("wall time", lambda r: format_duration(r.wall_seconds)),
    ("tokens/s", lambda r: format_value(r.tokens_per_second)),
)
_SHOWN = {"eval/accuracy", "eval/loss", "eval/margin"}


def _with_step(best: dict[str, float], metric: str) -> str:
    if metric not in best:
        return NO_VALUE
    return f"{format_value(best[metric])} ({int(best[f'{metric}_step'])})"


def table_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the comparison table, shared by the CLI and the HTML report:
    run, the differing hyperparameters, scores, cost, diagnosis."""
    params = list(comparison.runs[0].params) if comparison.runs else []
    extra = [] if comparison.metric in _SHOWN else [comparison.metric]  # the ranked metric
    header = ["run", *params, *(f"final {m}" for m in extra), *(t for t, _ in _COLUMNS),
              "diagnosis"]
    rows = [[r.name, *(format_param(r.params[p]) for p in params),
             *(format_value(r.final.get(m)) for m in extra), *(get(r) for _, get in _COLUMNS),
             r.diagnosis] for r in comparison.runs]
    return header, rows


def write_report(comparison: Comparison, output_dir: Path, smoothing: float = 0.0
                 ) -> dict[str, Path]:
    """Overlay charts (``loss.png``, ``accuracy.png``, ...) and ``report.html`` in
    ``output_dir``; returns them by name (``"loss"``, ..., ``"report"``).

    The HTML is self-contained (inline CSS, charts as data URIs, no scripts) so it can be
    mailed or attached as one file. Runs keep the table's order, so a run's colour in the
    charts is the swatch beside its name.
    """
    output_dir = Path(output_dir)
    runs = comparison.runs
    charts = plot_runs([r.path for r in runs], output_dir, smoothing, [r.name for r in runs])
    files = {p.stem: p for p in charts}
    files["report"] = output_dir / "report.html"
    write_text(files["report"], render_html(comparison, charts, smoothing))
    return files


def render_html(comparison: Comparison, charts: Sequence[Path], smoothing: float = 0.0) -> str:
    c = comparison
    title = f"sweep {c.sweep}" if c.sweep else f"{len(c.runs)} runs"
    direction = "higher" if c.higher_is_better else "lower"
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>preftune compare — {_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>",
        f"<h1>Comparing {_e(title)}</h1>",
        f"<p class=\"sub\">{len(c.runs)} runs under <code>{_e(_common_dir(c.runs))}</code>, "
        f"ranked by the final {_e(c.metric)} ({direction} is better)</p>",
        f"<p class=\"verdict-line\">{_e(best_sentence(c))}</p>",
        _html_table(c),
        _html_shared(c.shared),
        "<h2>Diagnosis</h2>",
        _html_diagnoses(c.runs),
        "<h2>Curves</h2>",
    ]
    if smoothing > 0:
        parts.append(f"<p class=\"sub\">train curves smoothed (EMA {smoothing:g}); "
                     "evaluation points as markers</p>")
    parts.append("<div class=\"charts\">")
    for chart in charts:
        data = base64.b64encode(chart.read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt=\"{_e(chart.stem)}\" "
                     f"src=\"data:image/png;base64,{data}\"></figure>")
    parts.append("</div>\n</body>\n</html>\n")
    return "\n".join(parts)


def _html_table(c: Comparison) -> str:
    header, rows = table_rows(c)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, (run, cells) in enumerate(zip(c.runs, rows, strict=True)):
        best = run is c.best
        name = (f"<span class=\"swatch\" style=\"background:{_colour(i)}\"></span>"
                f"{_e(cells[0])}" + (" <span class=\"tag\">best</span>" if best else ""))
        verdict = cells[-1]
        tds = [f"<td class=\"name\" title=\"{_e(str(run.path))}\">{name}</td>",
               *(f"<td>{_e(cell)}</td>" for cell in cells[1:-1]),
               f"<td><span class=\"badge {_verdict_class(verdict)}\">{_e(verdict)}</span></td>"]
        row_class = ' class="best"' if best else ""
        body.append(f"<tr{row_class}>{''.join(tds)}</tr>")
    return (f"<div class=\"scroll\"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
            + "\n".join(body) + "\n</tbody>\n</table></div>")


def _html_shared(shared: dict[str, Any]) -> str:
    if not shared:
        return ""
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(json.dumps(v))}</dd>" for k, v in shared.items())
    return (f"<details><summary>{len(shared)} settings all runs share</summary>"
            f"<dl class=\"shared\">{items}</dl></details>")


def _html_diagnoses(runs: list[RunSummary]) -> str:
    items = []
    for run in runs:
        summary = run.diagnosis_summary or ("not diagnosed yet" if run.diagnosis == NO_VALUE
                                            else "")
        summary = summary.removeprefix(f"{run.diagnosis}: ")  # the badge already says it
        items.append(f"<li><span class=\"badge {_verdict_class(run.diagnosis)}\">"
                     f"{_e(run.diagnosis)}</span> <b>{_e(run.name)}</b>"
                     + (f" — {_e(summary)}" if summary else "") + "</li>")
    return "<ul class=\"diagnoses\">" + "".join(items) + "</ul>"


def _verdict_class(verdict: str) -> str:
    return {"healthy": "ok", NO_VALUE: "none"}.get(verdict, "warn")


def _colour(i: int) -> str:
    """The colour plot_runs gives the i-th run (matplotlib's cycle), for the table's swatch."""
    from matplotlib.colors import to_hex

    return to_hex(f"C{i % 10}")


def _common_dir(runs: list[RunSummary]) -> str:
    paths = [str(r.path.resolve()) for r in runs]
    return os.path.commonpath(paths) if len(paths) > 1 else str(Path(paths[0]).parent)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       max-width: 1180px; margin: 2rem auto; padding: 0 1.25rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; border-bottom: 1px solid #d0d7de; }
.sub { color: #59636e; margin: 0 0 1rem; }
code { font-size: .9em; background: #f6f8fa; padding: .1em .3em; border-radius: 4px; }
.verdict-line { font-size: 1.05rem; background: #f6f8fa; border-left: 4px solid #1a7f37;
                padding: .6rem .9rem; margin: 1rem 0; width: fit-content; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: .92rem; }
th, td { padding: .45rem .7rem; text-align: right; border-bottom: 1px solid #d0d7de;
         white-space: nowrap; }
th { background: #f6f8fa; font-weight: 600; white-space: normal; vertical-align: bottom; }
th:first-child, td.name, th:last-child, td:last-child { text-align: left; }
tr.best td { background: #dafbe1; font-weight: 600; }
.swatch { display: inline-block; width: .75em; height: .75em; border-radius: 2px;
          margin-right: .45em; vertical-align: baseline; }
.tag { font-size: .75rem; font-weight: 600; color: #fff; background: #1a7f37;
       border-radius: 999px; padding: .05em .5em; margin-left: .3em; }
.badge { display: inline-block; font-size: .8rem; border-radius: 999px; padding: .05em .6em;
         font-weight: 600; }
.badge.ok { background: #dafbe1; color: #1a7f37; }
.badge.warn { background: #fff1c2; color: #8a5a00; }
.badge.none { background: #eaeef2; color: #59636e; }
details { margin: 1rem 0; color: #59636e; }
dl.shared { display: grid; gap: .15rem 1rem;
            grid-template-columns: repeat(3, max-content minmax(0, 1fr));
            font-size: .85rem; color: #1f2328; }
dl.shared dt { font-family: ui-monospace, monospace; }
dl.shared dd { margin: 0; font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
ul.diagnoses { list-style: none; padding: 0; }
ul.diagnoses li { margin: .35rem 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr));
          gap: 1rem; }
figure { margin: 0; }
figure img { width: 100%; height: auto; border: 1px solid #d0d7de; border-radius: 6px; }
"""
