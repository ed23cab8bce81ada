import math
import random
import struct

import pytest
import typer
from typer.testing import CliRunner

from preftune.cli.plot import register
from preftune.errors import UsageError
from preftune.fsutil import write_json, write_jsonl
from preftune.rundir import RunDir
from preftune.runs.plots import CHARTS, GRPO_CHARTS, ema, plot_run, plot_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHART_FILES = ["loss.png", "accuracy.png", "margin.png", "rewards.png", "learning_rate.png"]
GRPO_CHART_FILES = ["reward.png", "kl.png", "clip_fraction.png", "entropy.png", "loss.png",
                    "learning_rate.png"]


def write_metrics(run_dir, steps=50, eval_every=10, train=True, seed=0):
    """metrics.jsonl as the trainer logs it: a decaying, noisy loss each step (warmup then
    linear decay of the learning rate) and an eval row every ``eval_every`` steps."""
    rng = random.Random(seed)
    rows = []
    for step in range(1, steps + 1):
        progress = 1 - math.exp(-3 * step / steps)
        if train:
            chosen = 0.8 * progress + rng.gauss(0, 0.08)
            rejected = -0.6 * progress + rng.gauss(0, 0.08)
            rows.append({
                "step": step, "epoch": round(step / 25, 4),
                "loss": math.log(2) - 0.4 * progress + rng.gauss(0, 0.04),
                "accuracy": min(1.0, 0.5 + 0.45 * progress + rng.gauss(0, 0.05)),
                "margin": chosen - rejected, "chosen_reward": chosen, "rejected_reward": rejected,
                "chosen_logps": -310 + 10 * chosen, "rejected_logps": -330 + 10 * rejected,
                "learning_rate": 5e-6 * min(step / 5, (steps - step) / (steps - 5)),
                "grad_norm": 1.2, "tokens_per_second": 9000.0, "examples_per_second": 40.0,
                "peak_memory_mb": 7100.0})
        if eval_every and step % eval_every == 0:
            rows.append({
                "step": step, "epoch": round(step / 25, 4),
                "eval/loss": math.log(2) - 0.3 * progress, "eval/accuracy": 0.5 + 0.3 * progress,
                "eval/margin": 1.1 * progress, "eval/chosen_reward": 0.6 * progress,
                "eval/rejected_reward": -0.5 * progress, "eval/chosen_logps": -312.0,
                "eval/rejected_logps": -331.0})
    run_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(run_dir / "metrics.jsonl", rows)
    return run_dir


def write_grpo_run(run_dir, steps=30, seed=0):
    """A GRPO run as rl/train.py writes it: config.json of kind "grpo" and its step rows."""
    rng = random.Random(seed)
    rows = [{"step": step, "loss": rng.gauss(0, 0.01), "mean_reward": 0.2 + 0.01 * step,
             "reward_std": 0.3, "advantage_mean": 0.0, "zero_advantage_frac": 0.1,
             "kl": 0.001 * step, "clip_frac": 0.03, "clip_frac_low": 0.01,
             "clip_frac_high": 0.02, "ratio_mean": 1.0, "entropy": 1.2 - 0.01 * step,
             "grad_norm": 1.0, "learning_rate": 1e-6 * min(step, 10), "sequences": 16.0,
             "tokens": 2000.0, "tokens_per_second": 5000.0, "peak_memory_mb": 9000.0}
            for step in range(1, steps + 1)]
    run_dir.mkdir(parents=True)
    write_json(run_dir / "config.json", {"config": {"learning_rate": 1e-5}, "kind": "grpo"})
    write_jsonl(run_dir / "metrics.jsonl", rows)
    return run_dir


def assert_png(path, min_bytes=5_000):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > min_bytes, (path, len(data))
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1200, 675)  # 8 x 4.5 inches at 150 dpi


@pytest.fixture
def figures(monkeypatch):
    """The figures saved, by chart name (the title's first part), to inspect what was drawn."""
    from matplotlib.figure import Figure

    saved = {}
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        saved[self.get_suptitle().split(" — ")[0]] = self
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def test_plot_run_writes_five_charts_to_the_run_dir(tmp_path):
    run = write_metrics(tmp_path / "dpo_run")
    written = plot_run(run)
    assert [p.name for p in written] == CHART_FILES
    assert all(p.parent == run / "plots" for p in written)
    for path in written:
        assert_png(path)
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in (run / "plots").iterdir()) == sorted(CHART_FILES)


def test_each_chart_has_title_labels_legend_and_eval_markers(tmp_path, figures):
    plot_run(write_metrics(tmp_path / "dpo_run"))
    assert set(figures) == {name.replace("_", " ") for name in CHARTS}
    for title, fig in figures.items():
        ax = fig.axes[0]
        assert fig.get_suptitle() == f"{title} — dpo_run"
        assert ax.get_xlabel() == "optimizer step"
        assert ax.get_ylabel()
    legend = [t.get_text() for t in figures["loss"].axes[0].get_legend().get_texts()]
    assert legend == ["train", "eval"]
    train, evals = figures["loss"].axes[0].get_lines()
    assert len(train.get_xdata()) == 50
    assert list(evals.get_xdata()) == [10, 20, 30, 40, 50]
    assert evals.get_linestyle() == "None" and evals.get_marker() == "o"
    rewards = [t.get_text() for t in figures["rewards"].axes[0].get_legend().get_texts()]
    assert rewards == ["chosen (train)", "chosen (eval)", "rejected (train)", "rejected (eval)"]
    accuracy = [t.get_text() for t in figures["accuracy"].axes[0].get_legend().get_texts()]
    assert accuracy == ["train", "eval", "chance"]


def test_without_eval_rows_the_eval_series_are_skipped(tmp_path, figures):
    written = plot_run(write_metrics(tmp_path / "run", eval_every=0))
    assert [p.name for p in written] == CHART_FILES
    legend = [t.get_text() for t in figures["loss"].axes[0].get_legend().get_texts()]
    assert legend == ["train"]


def test_charts_with_no_data_are_skipped(tmp_path):
    only_eval = write_metrics(tmp_path / "eval_only", train=False)
    names = [p.name for p in plot_run(only_eval)]
    assert names == ["loss.png", "accuracy.png", "margin.png", "rewards.png"]

    empty = tmp_path / "just_started"
    empty.mkdir()
    (empty / "metrics.jsonl").write_text("")
    assert plot_run(empty) == []
    assert not (empty / "plots").exists()


def test_plot_runs_overlays_every_run_in_its_own_colour(tmp_path, figures):
    a = write_metrics(tmp_path / "lr5e-6", seed=1)
    b = write_metrics(tmp_path / "lr1e-5", steps=40, eval_every=20, seed=2)
    written = plot_runs([a, b], tmp_path / "compare", smoothing=0.5)
    assert [p.name for p in written] == CHART_FILES
    for path in written:
        assert_png(path)
    fig = figures["loss"]
    assert fig.get_suptitle() == "loss — 2 runs"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["lr5e-6", "lr1e-5"]
    colours = {line.get_color() for line in fig.axes[0].get_lines()}
    assert colours == {"C0", "C1"}

    plot_runs([a, b], tmp_path / "labelled", labels=["slow", "fast"])
    assert [t.get_text() for t in figures["loss"].legends[0].get_texts()] == ["slow", "fast"]
    with pytest.raises(UsageError, match="1 labels for 2 run directories"):
        plot_runs([a, b], tmp_path / "x", labels=["one"])


def test_smoothing_draws_the_ema_over_the_faint_raw_curve(tmp_path, figures):
    plot_run(write_metrics(tmp_path / "run"), smoothing=0.6)
    raw, smoothed, _evals = figures["loss"].axes[0].get_lines()
    assert raw.get_alpha() < 0.5 and smoothed.get_alpha() in (None, 1.0)
    assert list(smoothed.get_ydata()) == pytest.approx(ema(list(raw.get_ydata()), 0.6))
    # The learning-rate schedule is exact, so it is never smoothed.
    assert len(figures["learning rate"].axes[0].get_lines()) == 1


def test_a_grpo_run_gets_the_grpo_charts(tmp_path, figures):
    run = write_grpo_run(tmp_path / "grpo_run")
    written = plot_run(run)
    assert [p.name for p in written] == GRPO_CHART_FILES
    for path in written:
        assert_png(path)
    assert set(figures) == {name.replace("_", " ") for name in GRPO_CHARTS}
    ylabels = {title: fig.axes[0].get_ylabel() for title, fig in figures.items()}
    assert ylabels["loss"] == "GRPO loss (clipped surrogate + KL penalty)"  # not "per pair"
    assert ylabels["clip fraction"] == "clipped tokens (% of completion tokens)"
    assert list(figures["reward"].axes[0].get_lines()[0].get_ydata()) == pytest.approx(
        [0.2 + 0.01 * step for step in range(1, 31)])


def test_grpo_charts_not_logged_are_skipped(tmp_path):
    run = write_grpo_run(tmp_path / "no_kl")
    rows = [{k: v for k, v in row.items() if k not in ("kl", "entropy")}
            for row in RunDir(run).metrics()]
    write_jsonl(run / "metrics.jsonl", rows)
    names = [p.name for p in plot_run(run)]
    assert names == ["reward.png", "clip_fraction.png", "loss.png", "learning_rate.png"]


def test_grpo_and_preference_runs_are_not_overlaid(tmp_path):
    grpo, dpo = write_grpo_run(tmp_path / "grpo"), write_metrics(tmp_path / "dpo")
    with pytest.raises(UsageError, match="cannot overlay GRPO runs and preference runs"):
        plot_runs([grpo, dpo], tmp_path / "out")
    names = [p.name for p in plot_runs([grpo, grpo], tmp_path / "both")]
    assert names == GRPO_CHART_FILES


def test_ema_worked_by_hand():
    # w = 0.5 on [1, 0]: s1 = 0.5 / (1 - 0.5) = 1; s2 = (0.25 + 0) / (1 - 0.25) = 1/3.
    assert ema([1.0, 0.0], 0.5) == pytest.approx([1.0, 1 / 3])
    assert ema([3.0, 1.0, 2.0], 0.0) == [3.0, 1.0, 2.0]
    assert ema([0.7] * 5, 0.9) == pytest.approx([0.7] * 5)  # debiased: no ramp up from zero


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 1.5, float("nan")])
def test_smoothing_outside_0_1_is_a_usage_error(tmp_path, smoothing):
    run = write_metrics(tmp_path / "run", steps=10)
    with pytest.raises(UsageError, match=r"smoothing must be in \[0, 1\)"):
        plot_run(run, smoothing=smoothing)
    with pytest.raises(UsageError, match="smoothing"):
        plot_runs([run], tmp_path / "out", smoothing=smoothing)


def test_a_directory_without_metrics_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=f"{tmp_path} has no metrics.jsonl"):
        plot_run(tmp_path)
    with pytest.raises(UsageError, match="nope is not a directory"):
        plot_runs([tmp_path / "nope"], tmp_path / "out")


def cli_app():
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # a group, as in preftune.cli.main, so "plot" is a subcommand
        pass

    register(app)
    return app


def test_cli_plots_one_run_and_prints_the_paths(tmp_path):
    run = write_metrics(tmp_path / "run")
    result = CliRunner().invoke(cli_app(), ["plot", str(run), "--smoothing", "0.6"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(run / "plots" / name) for name in CHART_FILES]


def test_cli_overlays_several_runs_into_output(tmp_path):
    a, b = write_metrics(tmp_path / "a", seed=1), write_metrics(tmp_path / "b", seed=2)
    out = tmp_path / "compare"
    result = CliRunner().invoke(cli_app(), ["plot", str(a), str(b), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(out / name) for name in CHART_FILES]

    result = CliRunner().invoke(cli_app(), ["plot", str(a), str(b)])
    assert isinstance(result.exception, UsageError)
    assert "--output" in result.exception.message
    result = CliRunner().invoke(cli_app(), ["plot", str(a), "--smoothing", "-0.5"])
    assert isinstance(result.exception, UsageError)
