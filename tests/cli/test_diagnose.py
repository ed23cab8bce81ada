"""``preftune diagnose`` picks the rules by config.json's kind: a GRPO run is judged by
``runs/diagnose_rl`` (reward, KL, clip fraction, entropy), not by the preference loss curve."""

import json

import typer
from typer.testing import CliRunner

from preftune.cli.diagnose import register
from preftune.fsutil import write_json, write_jsonl

GRPO_CONFIG = {"learning_rate": 1e-5, "kl_coef": 0.04, "clip_eps": 0.2, "clip_eps_high": None,
               "publish_every": 1}


def write_grpo_run(run_dir, steps=40):
    """A GRPO run as rl/train.py writes it, whose entropy falls from 1.2 to 0.06 nats while
    the reward rises: only the GRPO rules name this (entropy_collapse)."""
    rows = [{"step": step, "loss": 0.0, "mean_reward": 0.2 + 0.5 * step / steps,
             "reward_std": 0.3, "kl": 0.002 + 0.02 * step / steps, "clip_frac": 0.03,
             "ratio_mean": 1.0, "entropy": 1.2 * (1 - 0.95 * step / steps),
             "zero_advantage_frac": 0.1, "grad_norm": 1.0, "learning_rate": 1e-5}
            for step in range(1, steps + 1)]
    run_dir.mkdir(parents=True)
    write_json(run_dir / "config.json", {"config": GRPO_CONFIG, "kind": "grpo"})
    write_jsonl(run_dir / "metrics.jsonl", rows)
    return run_dir


def cli_app():
    app = typer.Typer()

    @app.callback()
    def _root() -> None: ...

    register(app)
    return app


def test_a_grpo_run_is_judged_by_the_grpo_rules(tmp_path):
    run = write_grpo_run(tmp_path / "grpo_run")
    result = CliRunner().invoke(cli_app(), ["diagnose", str(run)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("entropy_collapse: the policy's entropy")
    assert "warning entropy_collapse (steps 1-40)" in result.output
    assert "- clip higher (DAPO): set clip_eps_high to 0.28" in result.output
    assert f"wrote {run / 'diagnosis.json'}" in result.output
    assert json.loads((run / "diagnosis.json").read_text())["verdict"] == "entropy_collapse"


def test_json_of_a_grpo_run_is_what_diagnosis_json_holds(tmp_path):
    run = write_grpo_run(tmp_path / "grpo_run")
    result = CliRunner().invoke(cli_app(), ["diagnose", str(run), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data == json.loads((run / "diagnosis.json").read_text())
    assert [f["condition"] for f in data["findings"]] == ["entropy_collapse"]
