"""PNG charts of training curves from ``metrics.jsonl``: one run's, or several runs overlaid.

Train rows are drawn as lines against the optimizer step, evaluation rows (``eval/`` names) as
markers. A GRPO run (config.json's ``kind`` is ``"grpo"``) gets ``GRPO_CHARTS``, what
``rl/train.py`` logs; any other run the preference ``CHARTS``. matplotlib is imported inside
the functions that draw, so the CLI starts fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preftune.errors import UsageError
from preftune.fsutil import atomic_path
from preftune.rundir import METRICS, RunDir

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import LineStyleType as LineStyle


@dataclass(frozen=True)
class Chart:
    """What one chart shows: train metrics as lines, ``eval/`` metrics as markers."""

    metrics: tuple[str, ...]
    ylabel: str
    smooth: bool = True  # a schedule is exact; averaging it would only shift it
    reference: float | None = None  # a dotted horizontal line: chance, or zero
    reference_label: str | None = None
    ticks: str = "plain"  # or "percent" (values in [0, 1]), "short" (1e-05 rather than an offset)
    ylim: tuple[float | None, float | None] = (None, None)  # None: fit the data


CHARTS: dict[str, Chart] = {
    "loss": Chart(("loss", "eval/loss"), "loss (mean per pair)"),
    "accuracy": Chart(("accuracy", "eval/accuracy"), "reward accuracy (% of pairs)",
                      reference=0.5, reference_label="chance", ticks="percent",
                      ylim=(-0.03, 1.03)),
    "margin": Chart(("margin", "eval/margin"), "reward margin (chosen − rejected)",
                    reference=0.0),
    "rewards": Chart(("chosen_reward", "rejected_reward",
                      "eval/chosen_reward", "eval/rejected_reward"),
                     "implicit reward", reference=0.0),
    "learning_rate": Chart(("learning_rate",), "learning rate", smooth=False,
                           ticks="short", ylim=(0, None)),
}

GRPO = "grpo"  # config.json's "kind" of a run written by rl/train.py
GRPO_CHARTS: dict[str, Chart] = {
    "reward": Chart(("mean_reward",), "mean reward (per completion)"),
    "kl": Chart(("kl",), "KL to the reference (k3, mean per token)", ylim=(0, None)),
    "clip_fraction": Chart(("clip_frac",), "clipped tokens (% of completion tokens)",
                           ticks="percent", ylim=(0, None)),  # often a few %: fit it
    "entropy": Chart(("entropy",), "entropy (nats per completion token)", ylim=(0, None)),
    "loss": Chart(("loss",), "GRPO loss (clipped surrogate + KL penalty)", reference=0.0),
    "learning_rate": CHARTS["learning_rate"],
}

# One run: a colour per curve (chosen green, rejected red). Several runs: a colour per run,
# and the curves of a chart told apart by line style and eval marker.
_CURVE_COLOURS = {"chosen_reward": "tab:green", "rejected_reward": "tab:red"}
_LINE_STYLES: tuple[LineStyle, ...] = ("-", "--", ":")
_EVAL_MARKERS = ("o", "s", "^")


@dataclass(frozen=True)
class _Run:
    label: str
    rows: list[dict[str, Any]]


def plot_run(run_dir: Path, output_dir: Path | None = None,
             smoothing: float = 0.0) -> list[Path]:
    """PNG charts of one run, written to ``run_dir/plots/`` (or ``output_dir``).

    One file per chart of ``CHARTS`` (``loss.png``, ``accuracy.png``, ...), eval rows overlaid as
    markers; of ``GRPO_CHARTS`` (``reward.png``, ``kl.png``, ...) for a GRPO run. A chart none of
    whose metrics were logged yet is skipped; returns the files written.
    """
    _check_smoothing(smoothing)
    run = _Run(Path(run_dir).resolve().name, _read_metrics(Path(run_dir)))
    target = Path(output_dir) if output_dir is not None else Path(run_dir) / "plots"
    return _plot([run], run.label, target, smoothing, _charts([Path(run_dir)]))


def plot_runs(run_dirs: Sequence[Path], output_dir: Path, smoothing: float = 0.0,
              labels: Sequence[str] | None = None) -> list[Path]:
    """The charts of ``plot_run`` with every run on them, one colour per run, in ``output_dir``.

    Runs are labelled by their directory name unless ``labels`` are given. GRPO and preference
    runs share no chart, so they cannot be overlaid.
    """
    _check_smoothing(smoothing)
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise UsageError("no run directories to plot", ["pass one or more run directories"])
    if labels is not None and len(labels) != len(dirs):
        raise UsageError(f"{len(labels)} labels for {len(dirs)} run directories",
                         ["give one label per run directory, in the same order"])
    names = list(labels) if labels is not None else _default_labels(dirs)
    runs = [_Run(name, _read_metrics(d)) for name, d in zip(names, dirs, strict=True)]
    subtitle = runs[0].label if len(runs) == 1 else f"{len(runs)} runs"
    return _plot(runs, subtitle, Path(output_dir), smoothing, _charts(dirs))


def ema(values: Sequence[float], smoothing: float) -> list[float]:
    """Debiased exponential moving average, as TensorBoard's smoothing slider draws it.

    ``s_n = w * s_(n-1) + (1 - w) * x_n`` from ``s_0 = 0``, divided by ``1 - w**n`` so the
    curve does not start near zero: the first point is ``x_1`` itself.
    """
    smoothed: list[float] = []
    last = 0.0
    for n, value in enumerate(values, start=1):
        last = smoothing * last + (1 - smoothing) * value
        smoothed.append(last / (1 - smoothing**n))
    return smoothed


def _check_smoothing(smoothing: float) -> None:
    if not 0 <= smoothing < 1:  # also rejects NaN
        raise UsageError(f"smoothing must be in [0, 1), got {smoothing:g}",
                         ["0 draws the raw curves; 0.6 is TensorBoard's default, 0.9 is heavy"])


def run_kind(run_dir: Path) -> str | None:
    """config.json's ``kind`` (``"grpo"``); None for a preference run, or a run without one."""
    path = RunDir(Path(run_dir)).config_path
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}",
                         ["its kind picks the charts and rules for the run; restore "
                          "config.json"]) from e
    kind = record.get("kind") if isinstance(record, dict) else None
    return kind if isinstance(kind, str) else None


def _charts(run_dirs: list[Path]) -> dict[str, Chart]:
    grpo = [run_kind(d) == GRPO for d in run_dirs]
    if any(grpo) and not all(grpo):
        raise UsageError("cannot overlay GRPO runs and preference runs: they log different "
                         "metrics", ["plot the GRPO runs and the preference runs separately"])
    return GRPO_CHARTS if all(grpo) else CHARTS


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    run = RunDir(run_dir)
    if not run.metrics_path.is_file():
        what = "is not a directory" if not run_dir.is_dir() else f"has no {METRICS}"
        raise UsageError(f"{run_dir} {what}; it is not a training run directory",
                         ["pass a directory made by preftune train (it holds config.json "
                          f"and {METRICS})"])
    return run.metrics()


def _default_labels(dirs: list[Path]) -> list[str]:
    names = [d.resolve().name for d in dirs]
    if len(set(names)) == len(names):
        return names
    # Same-named runs under different parents: show the parent too.
    return [f"{d.resolve().parent.name}/{d.resolve().name}" for d in dirs]


def _points(rows: list[dict[str, Any]], metric: str) -> tuple[list[float], list[float]]:
    """Steps and values of the rows that logged ``metric`` as a finite number, by step."""
    pairs = sorted((row["step"], row[metric]) for row in rows
                   if _is_number(row.get("step")) and _is_number(row.get(metric)))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _plot(runs: list[_Run], subtitle: str, output_dir: Path, smoothing: float,
          charts: dict[str, Chart]) -> list[Path]:
    written = []
    for name, chart in charts.items():
        path = output_dir / f"{name}.png"
        if _render(name, chart, runs, subtitle, smoothing, path):
            written.append(path)
    return written


def _render(name: str, chart: Chart, runs: list[_Run], subtitle: str, smoothing: float,
            path: Path) -> bool:
    """Draw one chart to ``path``; False (and nothing written) when it has no data at all."""
    if not any(_points(run.rows, m)[0] for run in runs for m in chart.metrics):
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    curves = [m for m in chart.metrics if not m.startswith("eval/")]
    smoothing = smoothing if chart.smooth else 0.0
    for i, run in enumerate(runs):
        for k, metric in enumerate(curves):
            colour = f"C{i % 10}" if len(runs) > 1 else _CURVE_COLOURS.get(metric, "C0")
            # Several runs get legends of their own (_legend_for_runs), not one entry per line.
            legend_name = _curve_name(curves, k) if len(runs) == 1 else None
            _draw_curve(ax, run.rows, metric, colour, k, smoothing, legend_name)
    _label(fig, ax, f"{name.replace('_', ' ')} — {subtitle}", chart, smoothing)
    if len(runs) == 1:
        ax.legend(loc="best", framealpha=0.9)
    else:
        _legend_for_runs(fig, ax, chart, runs, curves)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return True


def _draw_curve(ax: Axes, rows: list[dict[str, Any]], metric: str, colour: str, k: int,
                smoothing: float, name: str | None) -> None:
    """The train line of ``metric`` (raw faintly behind when smoothed) and its eval markers.

    ``name`` labels them in the legend; None leaves them out of it.
    """
    steps, values = _points(rows, metric)
    style: dict[str, Any] = {  # a lone point draws no line, so give it a marker
        "color": colour, "linestyle": _LINE_STYLES[k % len(_LINE_STYLES)],
        "marker": "o" if len(steps) == 1 else None, "markersize": 4}
    train_label = None if name is None else _legend_text(name, "train")
    if steps and smoothing > 0:
        ax.plot(steps, values, alpha=0.25, linewidth=1.0, **style)
        ax.plot(steps, ema(values, smoothing), linewidth=1.8, label=train_label, **style)
    elif steps:
        ax.plot(steps, values, linewidth=1.6, label=train_label, **style)
    eval_steps, eval_values = _points(rows, f"eval/{metric}")
    if eval_steps:
        ax.plot(eval_steps, eval_values, linestyle="none", zorder=3,
                label=None if name is None else _legend_text(name, "eval"),
                **_eval_style(colour, k))


def _eval_style(colour: str, k: int) -> dict[str, Any]:
    # A dark edge keeps a marker visible on top of the line of the same colour.
    return {"color": colour, "marker": _EVAL_MARKERS[k % len(_EVAL_MARKERS)],
            "markersize": 6.5, "markeredgecolor": "black", "markeredgewidth": 0.8}


def _curve_name(curves: list[str], k: int) -> str:
    """What tells a chart's curves apart (``chosen``, ``rejected``); empty for a lone curve."""
    return curves[k].removesuffix("_reward").replace("_", " ") if len(curves) > 1 else ""


def _legend_text(name: str, kind: str) -> str:
    return f"{name} ({kind})" if name else kind


def _label(fig: Figure, ax: Axes, title: str, chart: Chart, smoothing: float) -> None:
    """Title, axis labels and ticks, grid, and the chart's reference line."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

    fig.suptitle(title, fontsize="large" if len(title) <= 64 else "medium")
    if smoothing > 0:
        ax.set_title(f"train curves smoothed (EMA {smoothing:g}); raw values faint",
                     fontsize="small", color="0.35")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(chart.ylabel)
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0)  # training starts at step 0; also keeps a lone point off fractional ticks
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if chart.reference is not None:
        ax.axhline(chart.reference, color="0.45", linewidth=0.9, linestyle=":", zorder=1,
                   label=chart.reference_label)
    if chart.ticks == "percent":
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    elif chart.ticks == "short":
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.set_ylim(*chart.ylim)


def _legend_for_runs(fig: Figure, ax: Axes, chart: Chart, runs: list[_Run],
                     curves: list[str]) -> None:
    """Run colours below the axes (run names are long); inside, grey entries for what the line
    styles, markers and reference line mean, where there is more than one thing to tell apart."""
    from matplotlib.lines import Line2D

    fig.legend([Line2D([], [], color=f"C{i % 10}", linewidth=2) for i in range(len(runs))],
               [run.label for run in runs], loc="outside lower center", frameon=False,
               fontsize="small", ncols=1 if max(len(r.label) for r in runs) > 36 else 3)
    handles: list[Line2D] = []
    texts: list[str] = []
    for k, metric in enumerate(curves):
        curve = _curve_name(curves, k)
        handles.append(Line2D([], [], color="0.3", linestyle=_LINE_STYLES[k % len(_LINE_STYLES)]))
        texts.append(_legend_text(curve, "train"))
        if any(_points(run.rows, f"eval/{metric}")[0] for run in runs):
            handles.append(Line2D([], [], linestyle="none", **_eval_style("0.6", k)))
            texts.append(_legend_text(curve, "eval"))
    if chart.reference_label is not None:
        handles.append(Line2D([], [], color="0.45", linewidth=0.9, linestyle=":"))
        texts.append(chart.reference_label)
    if len(handles) > 1:
        ax.legend(handles, texts, loc="best", framealpha=0.9, fontsize="small")
