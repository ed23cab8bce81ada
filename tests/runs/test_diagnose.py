"""Run diagnosis on synthetic metrics with realistic noise: each condition is named, and noisy
healthy runs (several seeds, noise levels and loss shapes) raise no warning or error; each
algorithm is expected to start where the algorithm table says; swings are told from a plateau;
every piece of advice quotes the run's own values."""

import json
import math

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from preftune.cli.diagnose import register
from preftune.config import TrainConfig
from preftune.errors import ConfigError, UsageError
from preftune.fsutil import write_json, write_jsonl
from preftune.losses import table
from preftune.runs.diagnose import (
    CONDITIONS,
    MIN_ROWS,
    Diagnosis,
    LiveMonitor,
    diagnose,
    diagnose_run,
)

LN2 = math.log(2)
BALANCED = {"algo": "dpo", "learning_rate": 5e-5, "beta": 0.1, "warmup_steps": 5,
            "grad_accum": 8, "batch_size": 1, "epochs": 3, "dtype": "bf16", "sft_weight": 0.0,
            "max_length": 1024, "dataset": "pairs.jsonl"}


def decay(start=LN2, end=0.3, tau=0.25):
    """Exponential decay from ``start`` towards ``end``; ``tau`` is a share of the run."""
    return lambda frac: end + (start - end) * np.exp(-frac / tau)


def make_rows(seed=0, steps=500, every=10, loss=None, noise=0.02, accuracy=None,
              eval_every=None, eval_accuracy=None, memory=None, throughput=None, rewards=None):
    """metrics.jsonl rows as the trainer logs them, every ``every`` steps.

    loss, accuracy, eval_accuracy, memory, throughput: functions of the run's fraction done (0..1]
    giving the noiseless curve; noise is added here (numpy RandomState, fixed seed).
    rewards: (chosen, rejected) functions of the fraction; default chosen up, rejected down.
    """
    rng = np.random.RandomState(seed)
    loss = loss or decay()
    start, end = loss(0.0), loss(1.0)
    rows = []
    for step in range(every, steps + 1, every):
        frac = step / steps
        progress = (start - loss(frac)) / (start - end) if start != end else 0.0
        if rewards is None:
            chosen = 0.6 * progress + rng.normal(0, 0.05)
            rejected = -0.9 * progress + rng.normal(0, 0.05)
        else:
            chosen = rewards[0](frac) + rng.normal(0, 0.05)
            rejected = rewards[1](frac) + rng.normal(0, 0.05)
        warm, lr = 5, 5e-5
        rows.append({
            "step": step, "epoch": round(3 * frac, 4),
            "loss": float(loss(frac) + rng.normal(0, noise)),
            "accuracy": float(np.clip((accuracy(frac) if accuracy else 0.5 + 0.4 * progress)
                                      + rng.normal(0, 0.03), 0, 1)),
            "margin": chosen - rejected, "chosen_reward": chosen, "rejected_reward": rejected,
            "chosen_logps": -310 + 10 * chosen, "rejected_logps": -330 + 10 * rejected,
            "learning_rate": lr * min(step / warm, (steps - step) / (steps - warm)),
            "grad_norm": float(abs(1.0 + rng.normal(0, 0.2))),
            "tokens_per_second": float((throughput(frac) if throughput else 9000.0)
                                       * (1 + rng.normal(0, 0.05))
                                       * (0.7 if step == every else 1.0)),
            "examples_per_second": float(40 * (1 + rng.normal(0, 0.05))),
            "peak_memory_mb": float((memory(frac) if memory else 7100.0)
                                    + rng.normal(0, 15))})
        if eval_every and step % eval_every == 0:
            eval_acc = eval_accuracy(frac) if eval_accuracy else 0.5 + 0.3 * progress
            rows.append({"step": step, "epoch": round(3 * frac, 4),
                         "eval/loss": float(loss(frac) + 0.05 + rng.normal(0, 0.01)),
                         "eval/accuracy": float(eval_acc + rng.normal(0, 0.015)),
                         "eval/margin": 1.1 * progress, "eval/chosen_reward": 0.5 * progress,
                         "eval/rejected_reward": -0.6 * progress})
    return rows


def alarms(diagnosis: Diagnosis) -> list[str]:
    return [f"{f.condition}: {f.evidence}" for f in diagnosis.findings if f.severity != "info"]


def only(diagnosis: Diagnosis, condition: str):
    found = [f for f in diagnosis.findings if f.condition == condition]
    assert len(found) == 1, diagnosis.findings
    return found[0]


def diverging_loss(frac):
    """Healthy until 60% of the run, then climbing: the learning rate is too high."""
    base = decay()
    return base(frac) if frac < 0.6 else base(0.6) + 0.9 * (frac - 0.6)


def with_nan(rows):
    """The last train rows of a run that blew up: a huge loss, then NaN."""
    rows[-2]["loss"], rows[-1]["loss"] = 40.0, float("nan")
    return rows


def overfit_eval(frac):
    """Eval accuracy up to 0.75 at 40% of the run, then down to 0.60."""
    return 0.5 + 0.25 * min(frac / 0.4, 1) - 0.15 * max(0.0, frac - 0.4) / 0.6


CASES = {
    "diverging": lambda seed: make_rows(seed, loss=diverging_loss),
    "oscillating": lambda seed: make_rows(  # 5 slow swings of +-0.1 on a slow decay
        seed, loss=lambda f: decay(end=0.45, tau=0.3)(f) + 0.1 * math.sin(10 * math.pi * f)),
    "plateaued": lambda seed: make_rows(  # down to 0.55 in the first fifth, then flat
        seed, loss=decay(end=0.55, tau=0.08), accuracy=lambda f: 0.65 - 0.15 * math.exp(-f / 0.08)),
    "not_learning": lambda seed: make_rows(
        seed, loss=lambda f: LN2, accuracy=lambda f: 0.5, rewards=(lambda f: 0.0, lambda f: 0.0)),
    "nan": lambda seed: with_nan(make_rows(seed)),
    "overfitting": lambda seed: make_rows(seed, eval_every=50, eval_accuracy=overfit_eval),
    "memory_growing": lambda seed: make_rows(seed, memory=lambda f: 7000 + 1500 * f),
    "throughput_falling": lambda seed: make_rows(seed, throughput=lambda f: 9000 * (1 - 0.4 * f)),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("condition", list(CASES))
def test_each_condition_is_named(condition, seed):
    diagnosis = diagnose(CASES[condition](seed), BALANCED)
    assert diagnosis.verdict == condition, diagnosis.summary
    assert diagnosis.summary.startswith(f"{condition}: ")
    top = diagnosis.findings[0]
    assert top.condition == condition and top.severity in ("warning", "error")
    assert top.evidence and top.advice and top.steps is not None


def test_an_erratic_loss_is_oscillating():
    """Spikes of +0.2-0.5 in a third of the rows: robust statistics must not hide them all."""
    rows = make_rows(3, loss=decay(end=0.45, tau=0.3), noise=0.03)
    spikes = np.random.RandomState(3)
    for row in rows:
        if spikes.rand() < 0.33:
            row["loss"] += spikes.uniform(0.2, 0.5)
    finding = only(diagnose(rows, BALANCED), "oscillating")
    assert "from row to row" in finding.evidence


def test_rewards_falling_is_information_on_a_healthy_run():
    rows = make_rows(4, rewards=(lambda f: -0.8 * f, lambda f: -2.5 * f))
    diagnosis = diagnose(rows, BALANCED)
    assert diagnosis.verdict == "healthy"
    assert diagnosis.summary.endswith("note: rewards_falling")
    finding = only(diagnosis, "rewards_falling")
    assert finding.severity == "info"
    assert "common in DPO" in finding.advice[0]
    assert "sft_weight from 0 to 0.1" in finding.advice[1]
    assert "while the margin went" in finding.evidence


def lora_slow(seed):
    return make_rows(seed, loss=decay(end=0.5, tau=1.0), noise=0.02,
                     accuracy=lambda f: 0.5 + 0.2 * f)


def per_step_logging(seed):
    """logging_steps=1: each row is one step's loss, so ~3x noisier than 10-step means."""
    return make_rows(seed, every=1, noise=0.02 * math.sqrt(10))


def running_peak_memory(seed):
    """Peak memory as CUDA reports it: a running maximum over batches of random length."""
    rows = make_rows(seed, eval_every=100)
    lengths = np.random.RandomState(seed).beta(2, 5, size=len(rows))
    peak = np.maximum.accumulate(7000 + 600 * lengths)
    for row, value in zip(rows, peak, strict=True):
        row["peak_memory_mb"] = float(value)
    return rows


HEALTHY = {
    "dpo seed 0": lambda: make_rows(0),
    "dpo seed 1, noise 0.01": lambda: make_rows(1, noise=0.01),
    "dpo seed 2, noise 0.04": lambda: make_rows(2, noise=0.04),
    "dpo seed 3, noise 0.05, 300 steps": lambda: make_rows(3, steps=300, noise=0.05),
    "dpo fast to 0.08, 600 steps": lambda: make_rows(4, steps=600, loss=decay(end=0.08, tau=0.1)),
    "dpo with eval, rising": lambda: make_rows(5, eval_every=50),
    "lora slow decay": lambda: lora_slow(6),
    "lora linear decay": lambda: make_rows(7, loss=lambda f: LN2 - 0.15 * f, noise=0.03,
                                          accuracy=lambda f: 0.5 + 0.15 * f),
    "simpo from 1.3": lambda: make_rows(8, loss=decay(start=1.3, end=0.6, tau=0.3),
                                        noise=0.05),
    "orpo from 1.6, flattening": lambda: make_rows(9, loss=decay(start=1.6, end=0.95, tau=0.2),
                                                   noise=0.05),
    "per-step logging": lambda: per_step_logging(10),
    "running peak memory": lambda: running_peak_memory(11),
    "logged every 20 steps": lambda: make_rows(12, every=20, steps=600),
    "dpo flat early at 0.5, 85% accuracy": lambda: make_rows(
        13, loss=decay(end=0.5, tau=0.1), accuracy=lambda f: 0.85 - 0.35 * math.exp(-f / 0.1)),
    "slow dpo, loss within 3% of log 2 but the margin growing": lambda: make_rows(
        14, loss=lambda f: LN2 - 0.02 * f, rewards=(lambda f: 0.12 * f, lambda f: -0.18 * f)),
}


@pytest.mark.parametrize("name", list(HEALTHY))
def test_noisy_healthy_runs_raise_no_alarm(name):
    rows = HEALTHY[name]()
    algo = "simpo" if "simpo" in name else "orpo" if "orpo" in name else "dpo"
    for config in ({**BALANCED, "algo": algo}, None):
        diagnosis = diagnose(rows, config)
        assert alarms(diagnosis) == []
        assert diagnosis.verdict == "healthy"
        assert diagnosis.summary.startswith("healthy: loss ")
        assert "no change needed" in diagnosis.summary


def test_findings_are_listed_most_severe_first():
    rows = make_rows(0, memory=lambda f: 7000 + 1500 * f,
                     rewards=(lambda f: -0.8 * f, lambda f: -2.5 * f))
    diagnosis = diagnose(rows, BALANCED)
    assert [f.condition for f in diagnosis.findings] == ["memory_growing", "rewards_falling"]
    assert diagnosis.verdict == "memory_growing"
    assert diagnosis.summary.endswith("(also: rewards_falling)")


def test_healthy_summary_says_so_with_the_numbers():
    diagnosis = diagnose(make_rows(0, eval_every=100), BALANCED)
    assert diagnosis.findings == []
    assert diagnosis.summary == ("healthy: loss from 0.638 to 0.302 over steps 10-500, eval "
                                 "accuracy 0.788; no change needed")


def advice_of(condition, config, seed=0):
    return only(diagnose(CASES[condition](seed), config), condition).advice


def test_advice_quotes_the_runs_own_numbers():
    assert advice_of("diverging", BALANCED) == [
        "lower the learning rate from 5e-05 to 2.5e-05", "lower beta from 0.1 to 0.05",
        "raise warmup_steps from 5 to 20"]
    aggressive = {**BALANCED, "learning_rate": 1e-4, "beta": 0.2, "warmup_steps": 10,
                  "epochs": 5}
    assert advice_of("diverging", aggressive) == [
        "lower the learning rate from 0.0001 to 5e-05", "lower beta from 0.2 to 0.05",
        "raise warmup_steps from 10 to 20"]
    oscillating = advice_of("oscillating", BALANCED)
    assert oscillating[0] == "lower the learning rate from 5e-05 to 2.5e-05"
    assert oscillating[1] == ("double gradient accumulation: grad_accum from 8 to 16 "
                              "(effective batch from 8 to 16)")
    assert advice_of("plateaued", BALANCED) == [
        "train longer: epochs from 3 to 5",
        "raise the learning rate slightly from 5e-05 to 7.5e-05",
        "raise beta from 0.1 to 0.2"]
    not_learning = advice_of("not_learning", BALANCED)
    assert not_learning[:2] == ["raise the learning rate from 5e-05 to 0.0001",
                                "raise beta from 0.1 to 0.2"]
    assert not_learning[2].endswith("preftune validate pairs.jsonl")
    overfitting = advice_of("overfitting", BALANCED)
    assert overfitting[0] == "train fewer epochs: epochs from 3 to 2 (eval peaked at epoch 1.2)"
    assert overfitting[1] == "lower beta from 0.1 to 0.05"
    assert "checkpoint nearest step 200" in overfitting[2]
    simpo = {**BALANCED, "algo": "simpo", "beta": 2.0, "learning_rate": 1e-6}
    assert advice_of("diverging", simpo)[:2] == ["lower the learning rate from 1e-06 to 5e-07",
                                                 "lower beta from 2 to 1"]


def test_nan_advice_names_the_runs_dtype():
    fp16 = advice_of("nan", {**BALANCED, "dtype": "fp16"})
    assert fp16[0] == "lower the learning rate from 5e-05 to 2.5e-05"
    assert fp16[1].startswith("the run used dtype fp16") and "bf16" in fp16[1]
    assert advice_of("nan", BALANCED)[1].startswith("the run used dtype bf16, so fp16 overflow "
                                                    "is not the cause")
    assert advice_of("nan", BALANCED)[2].endswith("preftune validate pairs.jsonl")


def test_memory_and_throughput_name_the_step_range():
    memory = only(diagnose(CASES["memory_growing"](0), BALANCED), "memory_growing")
    assert memory.steps == (60, 500)
    assert "steps 60-500" in memory.evidence and "steps 60-500" in memory.advice[0]
    assert "leak" in memory.advice[0]
    throughput = only(diagnose(CASES["throughput_falling"](0), BALANCED), "throughput_falling")
    assert throughput.steps == (60, 500)
    assert "steps 60-500" in throughput.advice[0] and "memory pressure" in throughput.advice[0]
    assert "max_length from 1024 to 768" in throughput.advice[1]


def test_without_a_config_the_advice_is_generic():
    advice = advice_of("diverging", None)
    assert advice == ["lower the learning rate", "lower beta (e.g. to half its value)",
                      "raise warmup_steps (e.g. from 5 to 20)"]
    assert "preftune validate DATASET" in advice_of("nan", None)[2]


def test_short_runs_are_too_short_to_judge():
    rows = make_rows(0, steps=50, loss=diverging_loss)  # 5 rows
    diagnosis = diagnose(rows, BALANCED)
    assert (diagnosis.verdict, diagnosis.findings) == ("healthy", [])
    assert diagnosis.summary == ("too short to judge a trend (50 steps; it takes about 80 "
                                 "logged steps)")
    assert diagnose([], None).summary == ("too short to judge a trend (0 logged rows; it "
                                          "takes about 80 logged steps)")
    assert diagnose(make_rows(0, steps=10 * MIN_ROWS), BALANCED).summary.startswith("healthy:")
    # a NaN needs no trend: even a short run reports it
    assert diagnose(with_nan(make_rows(0, steps=50)), BALANCED).verdict == "nan"


def test_nan_wins_over_the_blow_up_before_it():
    diagnosis = diagnose(CASES["nan"](0), BALANCED)
    assert [f.condition for f in diagnosis.findings] == ["nan", "diverging"]
    assert diagnosis.findings[0].evidence == "loss became nan at step 500; it was 40 at step 490"
    assert diagnosis.summary.endswith("(also: diverging)")


def test_a_blow_up_in_the_last_row_is_divergence():
    rows = make_rows(0)
    rows[-1]["loss"] = 40.0  # the run then stopped on a NaN, which is never logged
    finding = only(diagnose(rows, BALANCED), "diverging")
    assert finding.evidence.startswith("loss jumped to 40 at step 500")


def test_to_dict_is_the_diagnosis_json_content():
    diagnosis = diagnose(CASES["diverging"](0), BALANCED)
    data = json.loads(json.dumps(diagnosis.to_dict()))
    assert set(data) == {"verdict", "summary", "findings"}
    assert data["verdict"] == "diverging" and data["verdict"] in CONDITIONS
    assert set(data["findings"][0]) == {"condition", "severity", "evidence", "advice", "steps"}
    assert data["findings"][0]["steps"] == list(diagnosis.findings[0].steps)


# ------------------------------------------------------------------------------ live


def feed(monitor, rows):
    """(index of the row, finding) for each finding the monitor returned."""
    return [(i, f) for i, f in enumerate(monitor.update(r) for r in rows) if f is not None]


def test_live_monitor_reports_divergence_soon_and_once():
    rows = make_rows(0, loss=diverging_loss)
    train = [r for r in rows if "loss" in r]
    onset = next(i for i, r in enumerate(train) if r["step"] > 300)
    found = feed(LiveMonitor(BALANCED), rows)
    assert [f.condition for _, f in found] == ["diverging"]
    index, finding = found[0]
    assert onset <= index <= onset + 8
    assert finding.advice[0] == "lower the learning rate from 5e-05 to 2.5e-05"


def test_live_monitor_reports_nan_at_once_and_once():
    rows = make_rows(0, steps=300)
    rows[15]["loss"] = float("inf")
    found = feed(LiveMonitor(BALANCED), rows)
    assert [(i, f.condition) for i, f in found] == [(15, "nan")]
    assert found[0][1].evidence.startswith("loss became inf at step 160")


def test_live_monitor_reports_oscillation():
    """The first upswing (+40%) cannot be told from divergence while it happens; once the loss
    has come back down and swung up again, the monitor names the oscillation."""
    found = feed(LiveMonitor(None), CASES["oscillating"](0))
    assert [f.condition for _, f in found] == ["diverging", "oscillating"]
    # sin(10 pi f) peaks at steps 25, 125, 225, ...; the first upswing after the initial
    # descent tops out at step 125 (row 11) and falls back by step 175 (row 16): the rise is
    # reported before it has fallen back
    assert found[0][0] <= 14
    assert found[1][1].evidence.startswith("loss swung up and back down 2 times")


@pytest.mark.parametrize("name", ["dpo seed 0", "dpo seed 2, noise 0.04", "lora slow decay",
                                  "per-step logging", "dpo with eval, rising"])
def test_live_monitor_is_quiet_on_healthy_runs(name):
    assert feed(LiveMonitor(BALANCED), HEALTHY[name]()) == []


# ------------------------------------------------------------------------------ run dir, CLI


def write_run(path, rows, config=BALANCED):
    path.mkdir(parents=True)
    write_jsonl(path / "metrics.jsonl", rows)
    if config is not None:
        write_json(path / "config.json", {"config": config, "versions": {}})
    return path


def test_diagnose_run_reads_the_run_and_writes_diagnosis_json(tmp_path):
    run = write_run(tmp_path / "run", CASES["nan"](0))  # NaN survives the JSON round trip
    diagnosis = diagnose_run(run)
    assert diagnosis.verdict == "nan"
    assert diagnosis.findings[0].advice[0] == "lower the learning rate from 5e-05 to 2.5e-05"
    saved = json.loads((run / "diagnosis.json").read_text())
    assert saved == diagnosis.to_dict()
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no temp left

    other = write_run(tmp_path / "other", CASES["diverging"](0), config=None)
    assert diagnose_run(other, write=False).findings[0].advice[0] == "lower the learning rate"
    assert not (other / "diagnosis.json").exists()


def test_diagnose_run_without_metrics_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="it has no metrics.jsonl") as info:
        diagnose_run(tmp_path)
    assert "preftune train" in info.value.hints[0]
    with pytest.raises(UsageError, match="no such directory"):
        diagnose_run(tmp_path / "missing")


def cli_app():
    app = typer.Typer()

    @app.callback()
    def _root() -> None: ...

    register(app)
    return app


def test_cli_prints_the_verdict_and_advice_and_writes_the_file(tmp_path):
    run = write_run(tmp_path / "run", CASES["diverging"](0))
    result = CliRunner().invoke(cli_app(), ["diagnose", str(run)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("diverging: loss rose")
    assert "error diverging (steps" in result.output
    assert "- lower the learning rate from 5e-05 to 2.5e-05" in result.output
    assert f"wrote {run / 'diagnosis.json'}" in result.output
    assert json.loads((run / "diagnosis.json").read_text())["verdict"] == "diverging"
    nan = write_run(tmp_path / "nan", CASES["nan"](0))
    result = CliRunner().invoke(cli_app(), ["diagnose", str(nan)], env={"COLUMNS": "200"})
    assert "error nan (step 500)\n  loss became nan at step 500" in result.output


def test_cli_json(tmp_path):
    run = write_run(tmp_path / "run", make_rows(0))
    result = CliRunner().invoke(cli_app(), ["diagnose", str(run), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data == json.loads((run / "diagnosis.json").read_text())
    assert (data["verdict"], data["findings"]) == ("healthy", [])


def test_cli_without_metrics_raises_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli_app(), ["diagnose", str(tmp_path)])
    assert isinstance(result.exception, UsageError)
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------------ swings


def square(period, steps, amplitude=0.25, mean=LN2):
    """A loss at mean + amplitude for half of every ``period`` steps and mean - amplitude for
    the other half, as a function of the run's fraction (``make_rows``)."""
    return lambda f: mean + amplitude * (1 if round(f * steps) // (period / 2) % 2 == 0 else -1)


def sine(period, steps, amplitude=0.25, mean=LN2):
    return lambda f: mean + amplitude * math.sin(2 * math.pi * f * steps / period)


@pytest.mark.parametrize("shape", [square, sine])
@pytest.mark.parametrize(("every", "period"), [(1, 4), (1, 6), (1, 8), (10, 40), (10, 60)])
def test_swings_around_a_flat_mean_are_oscillation(tmp_path, shape, every, period):
    """±0.25 around log 2, up and back down every few steps (logged every step) or every few
    rows (logged every 10): the 10-step means hide the first kind, and the mean neither falls
    nor rises, but the rows swing by a third of the loss and come back each time."""
    steps = 300 * every
    rows = make_rows(0, steps=steps, every=every, loss=shape(period, steps), noise=0.02)
    run = write_run(tmp_path / "run", rows, {**BALANCED, "logging_steps": every})
    diagnosis = diagnose_run(run)
    assert diagnosis.verdict == "oscillating", diagnosis.summary
    # not also "not learning": its advice (a higher learning rate) would contradict
    assert [f.condition for f in diagnosis.findings] == ["oscillating"]
    finding = only(diagnosis, "oscillating")
    amplitude = float(finding.evidence.removeprefix("loss swings ±").split()[0])
    # a sine's median distance from its mean is 0.71 of its peak (0.5 sampled 4 times a period)
    assert 0.1 <= amplitude <= 0.3
    assert f"about every {period} steps" in finding.evidence
    assert finding.advice[:2] == ["lower the learning rate from 5e-05 to 2.5e-05",
                                  "double gradient accumulation: grad_accum from 8 to 16 "
                                  "(effective batch from 8 to 16)"]


@pytest.mark.parametrize("every", [1, 10])
def test_a_flat_loss_with_small_noise_is_not_learning(every):
    rows = make_rows(1, steps=300 * every, every=every, loss=lambda f: LN2,
                     noise=0.02 * math.sqrt(10 / every), accuracy=lambda f: 0.5,
                     rewards=(lambda f: 0.0, lambda f: 0.0))
    diagnosis = diagnose(rows, {**BALANCED, "logging_steps": every})
    assert [f.condition for f in diagnosis.findings] == ["not_learning"]
    assert "within 3% of log 2 = 0.693" in diagnosis.findings[0].evidence


@pytest.mark.parametrize("every", [1, 10])
def test_a_loss_that_falls_then_stays_flat_is_a_plateau(every):
    rows = make_rows(2, steps=500, every=every, loss=decay(end=0.55, tau=0.08),
                     noise=0.02 * math.sqrt(10 / every),
                     accuracy=lambda f: 0.65 - 0.15 * math.exp(-f / 0.08))
    diagnosis = diagnose(rows, {**BALANCED, "logging_steps": every})
    assert [f.condition for f in diagnosis.findings] == ["plateaued"]
    # swinging by ±0.2 around that flat level, it oscillates instead
    swings = square(6, 500, amplitude=0.2, mean=0.0)
    rows = make_rows(2, steps=500, every=1, noise=0.02,
                     loss=lambda f: decay(end=0.55, tau=0.08)(f) + (swings(f) if f > 0.3 else 0),
                     accuracy=lambda f: 0.65 - 0.15 * math.exp(-f / 0.08))
    diagnosis = diagnose(rows, {**BALANCED, "logging_steps": 1})
    assert [f.condition for f in diagnosis.findings] == ["oscillating"]


@pytest.mark.parametrize(("every", "noise"), [(1, 0.1), (1, 0.15), (10, 0.04)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_falling_loss_with_noise_is_healthy(every, noise, seed):
    """Noise of 0.15 a row on a loss of 0.3-0.7 (20-50%): large, but it does not come back
    the way swings do, and the 10-step means fall cleanly."""
    rows = make_rows(seed, steps=500, every=every, noise=noise)
    diagnosis = diagnose(rows, {**BALANCED, "logging_steps": every})
    assert alarms(diagnosis) == [], diagnosis.summary


# ------------------------------------------------------------------------------ the table


def config_for(algo, **values):
    """BALANCED for ``algo`` (a name or a mixture), its recommended values from the table
    instead of DPO's, and ``values``."""
    names = [algo] if isinstance(algo, str) else algo
    recommended = {k: v for n in reversed(names) for k, v in table.ALGORITHMS[n].defaults.items()}
    return {**BALANCED, "batch_size": 2, **recommended, "algo": algo, **values}


def expected_start(config):
    cfg = TrainConfig.build(config)
    return table.start_loss(cfg.algorithms, cfg.loss_params(), cfg.loss_weights)


@pytest.fixture
def kto(monkeypatch):
    """The table's KTO entry; until the table has one, a stand-in with KTO's start: 1 -
    sigmoid(0) = 0.5 per example, times the weight of its label."""
    if "kto" not in table.ALGORITHMS:
        monkeypatch.setitem(table.ALGORITHMS, "kto", table.Algorithm(
            "kto", table.ALGORITHMS["dpo"].loss, True, "unpaired",
            ("beta", "desirable_weight", "undesirable_weight"),
            lambda p: 0.25 * (p.desirable_weight + p.undesirable_weight), "stand-in",
            "Ethayarajh et al. 2024, KTO (arXiv:2402.01306)"))
    return table.ALGORITHMS["kto"]


def test_kto_starting_near_half_and_falling_is_healthy(kto):
    config = config_for("kto")
    start = expected_start(config)
    assert start == pytest.approx(0.5, abs=0.05)
    rows = make_rows(0, loss=decay(start=start, end=0.2))
    diagnosis = diagnose(rows, config)
    assert diagnosis.verdict == "healthy" and diagnosis.findings == [], diagnosis.summary
    # started at log 2 instead, it is told where KTO starts
    finding = only(diagnose(make_rows(0), config), "unexpected_start")
    assert finding.evidence.startswith("the first logged loss 0.68")
    assert f"above {start:.3g}, where kto" in finding.evidence
    assert "log 2" not in finding.evidence


def test_kto_stuck_at_its_start_is_not_learning_from_there(kto):
    config = config_for("kto", desirable_weight=1.0, undesirable_weight=1.0)
    start = expected_start(config)
    rows = make_rows(0, loss=lambda f: start, accuracy=lambda f: 0.5,
                     rewards=(lambda f: 0.0, lambda f: 0.0))
    finding = only(diagnose(rows, config), "not_learning")
    assert f"of {start:.3g}, the kto loss at the first step" in finding.evidence
    assert "log 2" not in finding.evidence
    assert "desirable/undesirable labels may be wrong" in finding.advice[2]


def test_simpo_makes_no_claim_about_log_2():
    """SimPO's start depends on the data: a run sitting at 0.693 is judged against its own
    first value, and a run starting at 1.3 is where it may be."""
    config = config_for("simpo")
    assert expected_start(config) is None
    rows = make_rows(0, loss=lambda f: LN2, accuracy=lambda f: 0.5,
                     rewards=(lambda f: 0.0, lambda f: 0.0))
    diagnosis = diagnose(rows, config)
    finding = only(diagnosis, "not_learning")
    assert "its first value 0.69" in finding.evidence
    assert "log 2" not in json.dumps(diagnosis.to_dict())
    assert finding.advice[:2] == ["raise the learning rate from 1e-06 to 2e-06",
                                  "raise beta from 2 to 4"]
    healthy = diagnose(make_rows(0, loss=decay(start=1.3, end=0.6)), config)
    assert healthy.findings == []


def test_ipo_starts_at_one_over_four_beta_squared():
    config = config_for("ipo", beta=0.5)
    assert expected_start(config) == pytest.approx(1.0)
    assert diagnose(make_rows(0, loss=decay(start=1.0, end=0.4)), config).findings == []
    high = make_rows(0, loss=decay(start=2.0, end=0.5))
    finding = only(diagnose(high, config), "unexpected_start")
    assert finding.evidence.startswith("the first logged loss 1.9 at step 10 (a mean over "
                                       "steps 1-10) is 0.9 above 1, where ipo with beta 0.5 "
                                       "starts")
    # below, the first rows may have learnt a lot already: half of the start is allowed
    assert diagnose(make_rows(0, loss=decay(start=0.6, end=0.3)), config).findings == []
    assert finding.advice[:2] == [
        "check that the reference is the model training starts from: only then does the loss "
        "start at 1", "check that the loss ran with beta 0.5: the start 1 follows from it"]


def test_a_mixtures_start_is_the_weighted_sum_of_its_parts():
    config = config_for(["dpo", "hinge"], loss_weights=[0.5, 2.0])
    start = 0.5 * LN2 + 2.0 * 1.0
    assert expected_start(config) == pytest.approx(start)
    assert diagnose(make_rows(0, loss=decay(start=start, end=0.9)), config).findings == []
    finding = only(diagnose(make_rows(0), config), "unexpected_start")
    assert "below 2.35, where 0.5 dpo + 2 hinge starts" in finding.evidence
    # with an SFT part the start depends on the data: no claim
    sft_mix = config_for(["dpo", "sft"], loss_weights=[1.0, 0.5])
    assert expected_start(sft_mix) is None
    assert diagnose(make_rows(0, loss=decay(start=3.0, end=1.0)), sft_mix).findings == []


@pytest.mark.parametrize("name", sorted(table.ALGORITHMS))
def test_every_algorithm_starting_where_the_table_says_and_falling_is_healthy(name):
    """Whatever the table holds: a run that starts at its start value (or anywhere, where the
    value depends on the data) and falls raises nothing."""
    config = config_for(name)
    try:
        start = expected_start(config)
    except ConfigError as e:  # an entry whose recommended values need a companion setting
        pytest.skip(str(e))
    scale = max(abs(start), 0.5) if start is not None else 1.3
    first = start if start is not None else 1.3
    rows = make_rows(0, loss=decay(start=first, end=first - 0.6 * scale), noise=0.02 * scale)
    diagnosis = diagnose(rows, config)
    assert alarms(diagnosis) == [], diagnosis.summary
    # started twice as high as it should, it is told (where the table knows the start)
    high = diagnose(make_rows(0, loss=decay(start=first + scale, end=first), noise=0.02 * scale),
                    config)
    told = [f for f in high.findings if f.condition == "unexpected_start"]
    assert len(told) == (start is not None)
    if told:
        assert f"above {start:.3g}, where {name}" in told[0].evidence


def test_a_first_loss_above_the_start_is_named_with_both_numbers(tmp_path):
    config = {**BALANCED, "model": "HuggingFaceTB/SmolLM2-135M", "logging_steps": 10}
    run = write_run(tmp_path / "run", make_rows(0, loss=decay(start=0.95, end=0.3)), config)
    diagnosis = diagnose_run(run)
    assert diagnosis.verdict == "unexpected_start"
    finding = only(diagnosis, "unexpected_start")
    assert finding.evidence == (
        "the first logged loss 0.92 at step 10 (a mean over steps 1-10) is 0.23 above 0.693, "
        "where dpo starts (its loss before the first update, while the policy equals the "
        "reference)")
    assert finding.advice == [
        "check that the reference is the model training starts from "
        "(HuggingFaceTB/SmolLM2-135M): only then does the loss start at 0.693",
        "log every step to see where the loss starts: logging_steps from 10 to 1",
        "if it rose within the first steps, lower the learning rate from 5e-05 to 2.5e-05"]
    assert finding.steps == (10, 10)


def test_an_old_config_json_still_gives_the_start(tmp_path):
    """config.json of an older version: fields since added are missing, a field since removed
    is there; and one whose values no longer validate together still gives the algorithm."""
    old = {"algo": "sigmoid", "beta": 0.1, "learning_rate": 5e-5, "epochs": 3,
           "warmup_steps": 5, "grad_accum": 8, "batch_size": 1, "use_liger": False}
    flat = make_rows(0, loss=lambda f: LN2, accuracy=lambda f: 0.5,
                     rewards=(lambda f: 0.0, lambda f: 0.0))
    finding = only(diagnose_run(write_run(tmp_path / "old", flat, old)), "not_learning")
    assert "log 2 = 0.693" in finding.evidence
    broken = {"algo": "ipo", "beta": 0.5, "max_length": 256, "max_prompt_length": 512}
    high = make_rows(0, loss=decay(start=1.9, end=0.5))
    finding = only(diagnose_run(write_run(tmp_path / "broken", high, broken)), "unexpected_start")
    assert "above 1, where ipo with beta 0.5 starts" in finding.evidence


# ------------------------------------------------------------------------------ advice numbers


def test_diverging_advice_names_the_learning_rate_from_and_to(tmp_path):
    run = write_run(tmp_path / "run", CASES["diverging"](0), {**BALANCED, "learning_rate": 5e-5})
    advice = only(diagnose_run(run), "diverging").advice
    assert advice[0] == "lower the learning rate from 5e-05 to 2.5e-05"
    assert "5e-05" in advice[0] and "2.5e-05" in advice[0]


def test_plateau_advice_names_max_steps_where_the_run_set_it():
    advice = advice_of("plateaued", {**BALANCED, "max_steps": 500})
    assert advice[0] == "train longer: max_steps from 500 to 1000"


def test_overfitting_advice_names_max_steps_and_n_examples():
    advice = advice_of("overfitting", {**BALANCED, "max_steps": 500, "n_examples": 400})
    assert advice[0] == "stop where eval peaked: max_steps from 500 to 200"
    assert advice[2].startswith("train on more pairs: n_examples from 400 to 800 (or unset it to "
                                "use them all); meanwhile use the checkpoint nearest step 200")


def test_memory_advice_names_save_steps():
    unset = advice_of("memory_growing", {**BALANCED, "save_steps": None})
    assert unset[1].endswith("save checkpoints so a crash can resume: save_steps from unset to 50")
    every = advice_of("memory_growing", {**BALANCED, "save_steps": 100})
    assert every[1].endswith("a crash resumes from the last checkpoint, every 100 steps "
                             "(save_steps)")


def test_throughput_advice_names_the_batch_or_the_length():
    batched = advice_of("throughput_falling", {**BALANCED, "batch_size": 4, "grad_accum": 2})
    assert batched[1] == ("relieve memory: batch_size from 4 to 2 and grad_accum from 2 to 4 "
                          "keep the effective batch")
    single = advice_of("throughput_falling", {**BALANCED, "gradient_checkpointing": False})
    assert single[1] == ("relieve memory: max_length from 1024 to 768, or gradient_checkpointing "
                         "from false to true")


def test_rewards_falling_advice_weights_a_mixtures_sft_part():
    rows = make_rows(4, rewards=(lambda f: -0.8 * f, lambda f: -2.5 * f))
    mixture = config_for(["dpo", "sft"], loss_weights=[1.0, 0.5])
    advice = only(diagnose(rows, mixture), "rewards_falling").advice
    assert advice[0].startswith("this is common in DPO and its kin (1 dpo + 0.5 sft here)")
    assert advice[1] == ("if generations get worse, weight the mixture's sft part more: "
                         "loss_weights from [1, 0.5] to [1, 1]")
    orpo = only(diagnose(rows, config_for("orpo")), "rewards_falling").advice
    assert len(orpo) == 1  # ORPO's NLL term is built in: no SFT advice
    assert only(diagnose(rows, {**BALANCED, "sft_weight": 0.2}), "rewards_falling").advice[1] \
        == "if generations get worse, raise the SFT term: sft_weight from 0.2 to 0.4"


def test_sft_advice_has_no_beta():
    config = config_for("sft")
    not_learning = advice_of("not_learning", config)
    assert not_learning[0] == "raise the learning rate from 5e-05 to 0.0001"
    assert not any("beta" in line for line in not_learning)
    assert "the chosen responses may be empty, truncated or unrelated" in not_learning[1]
    assert advice_of("diverging", config) == ["lower the learning rate from 5e-05 to 2.5e-05",
                                              "raise warmup_steps from 5 to 20"]
    rows = make_rows(4, rewards=(lambda f: -0.8 * f, lambda f: -2.5 * f))
    assert [f.condition for f in diagnose(rows, config).findings] == []


def test_lower_beta_halves_the_smaller_of_the_runs_and_the_tables():
    assert advice_of("diverging", {**BALANCED, "beta": 0.05})[1] == "lower beta from 0.05 to 0.025"
    simpo = config_for("simpo", beta=2.5)
    assert advice_of("diverging", simpo)[1] == "lower beta from 2.5 to 1"
