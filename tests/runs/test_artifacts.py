"""RunArtifacts through the training loop: charts, diagnosis.json, trackers and live warnings
come with a run trained with them, as the CLI and the Python API train."""

import json

import pytest

from preftune.config import TrainConfig
from preftune.engine.loop import train
from preftune.engine.report import Reporter
from preftune.runs.artifacts import RunArtifacts

FAST = {"epochs": 4, "batch_size": 8, "grad_accum": 1, "learning_rate": 2e-3,
        "warmup_steps": 2, "max_length": 256, "max_prompt_length": 128, "logging_steps": 4}


def test_a_run_gets_its_charts_and_diagnosis(sample_pairs, tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(**{**FAST, "epochs": 2, "dataset": str(sample_pairs),
                         "output_dir": str(run), "eval_split": 0.25})
    result = train(cfg, hooks=RunArtifacts())
    charts = sorted(p.name for p in (run / "plots").iterdir())
    assert charts == ["accuracy.png", "learning_rate.png", "loss.png", "margin.png",
                      "rewards.png"]
    for chart in charts:
        data = (run / "plots" / chart).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    saved = json.loads((run / "diagnosis.json").read_text())
    assert result.diagnosis == saved and saved["verdict"]


def test_trackers_get_the_same_values_as_metrics_jsonl(sample_pairs, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "run"
    cfg = TrainConfig(**{**FAST, "max_steps": 8, "eval_steps": 4, "eval_split": 0.25,
                         "dataset": str(sample_pairs), "output_dir": str(run),
                         "report_to": ["tensorboard", "mlflow"]})
    train(cfg, hooks=RunArtifacts())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    expected = {(r["step"], r["loss"]) for r in rows if "loss" in r}
    expected_eval = {(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r}
    assert len(expected) == 2 and len(expected_eval) == 2

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    logged = {(e.step, e.value) for e in events.Scalars("loss")}
    assert {s for s, _ in logged} == {s for s, _ in expected}
    for (step, value), (_, want) in zip(sorted(logged), sorted(expected), strict=True):
        assert value == pytest.approx(want, rel=1e-6), step

    client = MlflowClient(tracking_uri=(run / "mlruns").as_uri())
    (mlflow_run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert mlflow_run.info.run_name == "run"
    history = {(m.step, m.value) for m in client.get_metric_history(mlflow_run.info.run_id,
                                                                     "eval/accuracy")}
    assert history == expected_eval


class Warnings(Reporter):
    def __init__(self) -> None:
        self.findings: list = []

    def warning(self, finding) -> None:
        self.findings.append(finding)


def test_a_rising_loss_warns_live_and_is_diagnosed(sample_pairs, tmp_path, monkeypatch):
    from preftune.engine import loop

    real = loop.mixture_loss(("dpo",))
    calls = {"n": 0}

    def rising(logps, params):  # a loss that grows step after step, as a diverging run's
        calls["n"] += 1
        out = real(logps, params)
        return type(out)(out.losses * (1.0 + 0.05 * calls["n"]), out.chosen_rewards,
                         out.rejected_rewards)

    monkeypatch.setattr(loop, "mixture_loss", lambda names, weights: rising)
    reporter = Warnings()
    cfg = TrainConfig(**{**FAST, "learning_rate": 1e-5, "epochs": 12, "logging_steps": 1,
                         "dataset": str(sample_pairs), "output_dir": str(tmp_path)})
    result = train(cfg, reporter=reporter, hooks=RunArtifacts())
    assert [f.condition for f in reporter.findings] == ["diverging"]
    advice = reporter.findings[0].advice
    assert any("lower the learning rate from 1e-05 to 5e-06" in line for line in advice)
    saved = json.loads((tmp_path / "diagnosis.json").read_text())
    assert saved["verdict"] == "diverging" == result.diagnosis["verdict"]
