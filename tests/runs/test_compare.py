import json
import os
import re
from datetime import datetime

import pytest
import typer
from typer.testing import CliRunner

from preftune.cli.compare import register
from preftune.config import TrainConfig
from preftune.errors import UsageError
from preftune.fsutil import write_json, write_jsonl
from preftune.runs.compare import best_sentence, compare_runs, write_report

CHART_FILES = {"loss", "accuracy", "margin", "rewards", "learning_rate"}
CREATED = "2025-05-01T10:00:00+00:00"

# Eval rows at steps 10, 20, 30, 40. By final eval/accuracy: beta0.1 (0.875) beats beta0.05
# (0.8) by 0.075; beta0.2 peaked at 0.8125 (step 20) but ends last. By final eval/loss (lower
# is better): beta0.2 (0.40) beats beta0.05 (0.45) by 0.05.
EVALS = {
    "beta0.05": {"beta": 0.05, "accuracy": [0.6, 0.7, 0.75, 0.8], "loss": [0.65, 0.55, 0.5, 0.45]},
    "beta0.1": {"beta": 0.1, "accuracy": [0.625, 0.75, 0.8125, 0.875],
                "loss": [0.66, 0.6, 0.55, 0.5]},
    "beta0.2": {"beta": 0.2, "accuracy": [0.7, 0.8125, 0.8, 0.75], "loss": [0.6, 0.5, 0.45, 0.4]},
}
DIAGNOSES = {
    "beta0.05": {"verdict": "healthy", "summary": "loss falling, accuracy rising", "findings": []},
    "beta0.2": {"verdict": "overfitting", "summary": "eval accuracy fell after step 20",
                "findings": [{"code": "eval_peak", "step": 20}]},
}


def make_run(run_dir, beta, eval_accuracy=(), eval_loss=(), wall_seconds=754.0,
             tokens_per_second=(9000.0, 9500.0, 11000.0)):
    """A run directory as preftune train leaves it: config.json with the resolved config,
    train rows every 5 steps and an eval row every 10, file times that match ``created``."""
    run_dir.mkdir(parents=True)
    config = TrainConfig(beta=beta, output_dir=str(run_dir), dataset="/data/hh-rlhf.jsonl",
                         eval_split=0.1, seed=42).model_dump(mode="json")
    write_json(run_dir / "config.json", {
        "config": config, "data": {"source": "/data/hh-rlhf.jsonl", "fingerprint": "ab12"},
        "versions": {"python": "3.11.9", "preftune": "0.1.0"}, "created": CREATED})
    rows = []
    for step in range(5, 45, 5):
        progress = step / 40
        rows.append({
            "step": step, "epoch": round(progress, 4), "loss": 0.69 - 0.3 * progress,
            "accuracy": 0.5 + 0.4 * progress, "margin": 2 * beta * progress,
            "chosen_reward": beta * progress, "rejected_reward": -beta * progress,
            "learning_rate": 5e-5 * (1 - progress), "grad_norm": 1.1,
            "tokens_per_second": tokens_per_second[step // 5 % len(tokens_per_second)],
            "examples_per_second": 40.0, "peak_memory_mb": 7100.0})
        k = step // 10 - 1
        if step % 10 == 0 and k < len(eval_accuracy):
            rows.append({"step": step, "epoch": round(progress, 4),
                         "eval/loss": eval_loss[k], "eval/accuracy": eval_accuracy[k],
                         "eval/margin": 4 * beta * progress, "eval/chosen_reward": beta,
                         "eval/rejected_reward": -beta})
    write_jsonl(run_dir / "metrics.jsonl", rows)
    start = datetime.fromisoformat(CREATED).timestamp()
    os.utime(run_dir / "config.json", (start, start))
    os.utime(run_dir / "metrics.jsonl", (start + wall_seconds, start + wall_seconds))
    return run_dir


@pytest.fixture
def sweep(tmp_path):
    """A 3-run beta sweep in ``preftune sweep``'s layout, a fourth run still pending."""
    path = tmp_path / "sweep"
    rows = []
    for name, e in EVALS.items():
        make_run(path / "runs" / name, e["beta"], e["accuracy"], e["loss"])
        rows.append({"name": name, "path": f"runs/{name}", "params": {"beta": str(e["beta"])},
                     "status": "done", "error": None})
        if name in DIAGNOSES:
            write_json(path / "runs" / name / "diagnosis.json", DIAGNOSES[name])
    rows.append({"name": "beta0.5", "path": "runs/beta0.5", "params": {"beta": "0.5"},
                 "status": "pending", "error": None})
    write_json(path / "sweep.json", {"name": "beta-sweep", "base": {},
                                     "grid": {"beta": ["0.05", "0.1", "0.2", "0.5"]},
                                     "runs": rows})
    return path


def names(runs):
    return [r.name for r in runs]


def test_only_the_hyperparameters_that_differ_are_columns(sweep):
    comparison = compare_runs([sweep])
    assert [r.params for r in comparison.runs] == [{"beta": 0.1}, {"beta": 0.05}, {"beta": 0.2}]
    # seed, model, learning rate are equal; output_dir differs but is not a hyperparameter
    assert comparison.shared["seed"] == 42 and comparison.shared["learning_rate"] == 5e-5
    assert "output_dir" not in comparison.shared and "beta" not in comparison.shared
    assert comparison.sweep == "beta-sweep"


def test_best_runner_up_and_gap_by_final_eval_accuracy(sweep):
    comparison = compare_runs([sweep])
    assert names(comparison.runs) == ["beta0.1", "beta0.05", "beta0.2"]  # beta0.5 not started
    assert comparison.higher_is_better
    assert comparison.best.name == "beta0.1" and comparison.runner_up.name == "beta0.05"
    assert comparison.gap == pytest.approx(0.075)
    assert best_sentence(comparison) == ("best by eval/accuracy: beta0.1 (0.875); runner-up: "
                                         "beta0.05 (0.800), gap 0.075")
    # beta0.2 peaked early: its best is shown, but the final value ranks it
    last = comparison.runs[-1]
    assert last.best == {"eval/accuracy": 0.8125, "eval/accuracy_step": 20,
                         "eval/loss": 0.4, "eval/loss_step": 40}
    assert last.final["eval/accuracy"] == 0.75


def test_loss_ranks_lower_first_unless_told_to_maximize(sweep):
    comparison = compare_runs([sweep], metric="eval/loss")
    assert not comparison.higher_is_better
    assert names(comparison.runs) == ["beta0.2", "beta0.05", "beta0.1"]
    assert comparison.gap == pytest.approx(0.05)
    maximized = compare_runs([sweep], metric="eval/loss", higher_is_better=True)
    assert names(maximized.runs) == ["beta0.1", "beta0.05", "beta0.2"]


def test_summary_of_a_run(sweep):
    by_name = {r.name: r for r in compare_runs([sweep]).runs}
    run = by_name["beta0.05"]
    assert run.path == sweep / "runs" / "beta0.05"
    assert run.final == pytest.approx({"eval/accuracy": 0.8, "eval/loss": 0.45,
                                       "eval/margin": 0.2, "loss": 0.39, "accuracy": 0.9})
    assert run.tokens_per_second == 9500.0  # median of the train rows
    assert run.wall_seconds == pytest.approx(754.0)
    assert (run.diagnosis, run.diagnosis_summary) == ("healthy", "loss falling, accuracy rising")
    assert by_name["beta0.1"].diagnosis == "—"
    assert by_name["beta0.2"].diagnosis == "overfitting"


def test_wall_time_is_unknown_when_the_run_was_copied_without_its_times(sweep):
    run = sweep / "runs" / "beta0.1"
    os.utime(run / "config.json")  # now: far from "created"
    assert compare_runs([run]).runs[0].wall_seconds is None


def test_runs_without_the_metric_rank_last_and_ties_go_by_eval_loss_then_name(tmp_path):
    a = make_run(tmp_path / "a", 0.1, [0.7], [0.6])
    b = make_run(tmp_path / "b", 0.1, [0.7], [0.5])
    c = make_run(tmp_path / "c", 0.1, [0.7], [0.6])
    no_eval = make_run(tmp_path / "0-no-eval", 0.1)
    comparison = compare_runs([no_eval, c, b, a])
    assert names(comparison.runs) == ["b", "a", "c", "0-no-eval"]
    assert comparison.gap == 0.0 and comparison.runs[0].params == {}
    assert best_sentence(comparison) == ("best by eval/accuracy: b (0.700); tied with a, lower "
                                         "eval/loss decides (0.500 against 0.600)")
    assert best_sentence(compare_runs([c, a])) == ("best by eval/accuracy: a (0.700); tied "
                                                   "with c, ranked by name")
    alone = compare_runs([no_eval])
    assert alone.best is None and alone.gap is None
    assert best_sentence(alone) == "no run has logged eval/accuracy yet, so none is ranked"


def test_a_sweep_without_a_manifest_compares_every_run_in_runs(sweep):
    (sweep / "sweep.json").unlink()
    (sweep / "runs" / "beta0.5").mkdir()  # created, nothing logged: not a run yet
    comparison = compare_runs([sweep])
    assert sorted(names(comparison.runs)) == ["beta0.05", "beta0.1", "beta0.2"]
    assert comparison.sweep == "sweep"


def test_paths_that_are_not_runs_are_refused_with_a_hint(sweep, tmp_path):
    with pytest.raises(UsageError, match="is not a training run directory") as e:
        compare_runs([sweep / "runs" / "beta0.1", tmp_path / "missing"])
    assert "does not exist" in e.value.message and e.value.hints
    with pytest.raises(UsageError, match="compare one sweep at a time"):
        compare_runs([sweep, sweep / "runs" / "beta0.1"])
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    with pytest.raises(UsageError, match="no runs with metrics in the sweep") as e:
        compare_runs([tmp_path / "empty"])
    assert any("preftune sweep" in h for h in e.value.hints)


def test_report_is_one_self_contained_html_file(sweep, tmp_path):
    files = write_report(compare_runs([sweep]), tmp_path / "report", smoothing=0.6)
    assert set(files) == CHART_FILES | {"report"}
    for name in CHART_FILES:
        assert files[name] == tmp_path / "report" / f"{name}.png"
        assert files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = files["report"].read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(CHART_FILES)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert "<table>" in page and "<th>beta</th>" in page
    best_row = re.search(r'<tr class="best">(.*?)</tr>', page).group(1)
    assert "beta0.1" in best_row and "0.875" in best_row
    assert ("best by eval/accuracy: beta0.1 (0.875); runner-up: beta0.05 (0.800), "
            "gap 0.075") in page
    assert "eval accuracy fell after step 20" in page  # the diagnosis summaries
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(
        [f"{n}.png" for n in CHART_FILES] + ["report.html"])  # no temporary files left


def cli_app():
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # a group, as in preftune.cli.main, so "compare" is a subcommand
        pass

    register(app)
    return app


def test_cli_prints_the_table_and_the_best_and_writes_into_the_sweep(sweep):
    result = CliRunner().invoke(cli_app(), ["compare", str(sweep)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "beta0.05" in result.stdout and "overfitting" in result.stdout
    assert ("best by eval/accuracy: beta0.1 (0.875); runner-up: beta0.05 (0.800), gap 0.075"
            in result.stdout)
    assert str(sweep / "compare" / "report.html") in result.stdout.splitlines()
    assert (sweep / "compare" / "accuracy.png").is_file()


def test_cli_json_and_run_directories(sweep, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = [str(sweep / "runs" / n) for n in ("beta0.2", "beta0.05")]
    result = CliRunner().invoke(cli_app(), ["compare", *runs, "--metric", "eval/loss", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["best"], data["runner_up"], data["metric"]) == ("beta0.2", "beta0.05",
                                                                  "eval/loss")
    assert data["gap"] == pytest.approx(0.05)
    assert data["runs"][0]["params"] == {"beta": 0.2}
    report = tmp_path / data["files"]["report"]
    assert report.is_file() and re.fullmatch(r"compare-\d{8}-\d{6}", report.parent.name)

    result = CliRunner().invoke(cli_app(), ["compare", str(tmp_path)])
    assert isinstance(result.exception, UsageError)
