"""GRPO run diagnosis on synthetic metrics with noise: healthy runs raise nothing; each condition
is named, with advice in the run's own numbers; diagnosis.json is written."""

import json
import math

import numpy as np
import pytest

from preftune.errors import UsageError
from preftune.fsutil import write_json, write_jsonl
from preftune.runs.diagnose_rl import CONDITIONS, diagnose_grpo, diagnose_grpo_run

CONFIG = {"learning_rate": 1e-5, "kl_coef": 0.04, "clip_eps": 0.2, "clip_eps_high": None,
          "publish_every": 1}


def rows(seed=0, steps=60, reward=None, kl=None, clip=None, entropy=None, ratio=None,
         zero=None, noise=0.05):
    """A run's rows; each metric a function of the share of the run done, plus noise."""
    rng = np.random.default_rng(seed)
    reward = reward or (lambda f: 0.2 + 0.5 * f)
    kl = kl or (lambda f: 0.002 + 0.02 * f)
    clip = clip or (lambda f: 0.03)
    entropy = entropy or (lambda f: 1.2 - 0.3 * f)
    ratio = ratio or (lambda f: 1.0 + 0.01 * rng.standard_normal())
    zero = zero or (lambda f: 0.1)
    out = []
    for step in range(1, steps + 1):
        f = step / steps
        out.append({"step": step, "loss": 0.01 * rng.standard_normal(),
                    "mean_reward": reward(f) + noise * rng.standard_normal(),
                    "reward_std": 0.3 + 0.02 * rng.standard_normal(),
                    "kl": max(kl(f) * (1 + 0.1 * rng.standard_normal()), 0.0),
                    "clip_frac": max(clip(f) + 0.01 * rng.standard_normal(), 0.0),
                    "ratio_mean": ratio(f),
                    "entropy": entropy(f) * (1 + 0.03 * rng.standard_normal()),
                    "zero_advantage_frac": zero(f), "grad_norm": 1.0})
    return out


@pytest.mark.parametrize("seed", range(5))
def test_noisy_healthy_runs_raise_nothing(seed):
    diagnosis = diagnose_grpo(rows(seed), CONFIG)
    assert diagnosis.verdict == "healthy", diagnosis.summary
    assert diagnosis.summary.startswith("healthy: mean reward from 0.2")


def test_a_reward_that_does_not_rise():
    d = diagnose_grpo(rows(reward=lambda f: 0.4), CONFIG)
    assert d.verdict == "reward_flat"
    assert "raise the learning rate from 1e-05 to 2e-05" in d.findings[0].advice


def test_a_falling_reward():
    d = diagnose_grpo(rows(reward=lambda f: 0.6 - 0.4 * f), CONFIG)
    assert d.verdict == "reward_falling"
    assert "lower the learning rate from 1e-05 to 5e-06" in d.findings[0].advice


def test_kl_blowing_up():
    d = diagnose_grpo(rows(kl=lambda f: 0.01 * math.exp(6 * f)), CONFIG)
    assert d.verdict == "kl_exploding"
    assert "raise kl_coef from 0.04 to 0.08" in d.findings[0].advice


def test_clip_fraction_high_and_stuck_at_zero():
    high = diagnose_grpo(rows(clip=lambda f: 0.35), {**CONFIG, "publish_every": 4})
    assert high.verdict == "clip_high"
    assert any("every step, not every 4" in a for a in high.findings[0].advice)
    zero = diagnose_grpo([{**r, "clip_frac": 0.0} for r in rows()], CONFIG)
    assert zero.verdict == "healthy" and [f.condition for f in zero.findings] == ["clip_zero"]
    # Ratio exactly 1 (no inference log-probs sent): the clip cannot act; nothing to say.
    on_policy = [{**r, "clip_frac": 0.0, "ratio_mean": 1.0} for r in rows()]
    assert diagnose_grpo(on_policy, CONFIG).findings == []


def test_entropy_collapse():
    d = diagnose_grpo(rows(entropy=lambda f: 1.2 * math.exp(-5 * f)), CONFIG)
    assert d.verdict == "entropy_collapse"
    assert any("clip_eps_high to 0.28" in a for a in d.findings[0].advice)


def test_groups_that_all_score_alike():
    d = diagnose_grpo(rows(zero=lambda f: 0.75), CONFIG)
    assert d.verdict == "no_signal" and "75%" in d.findings[0].evidence


def test_a_non_finite_loss_is_an_error_even_in_a_short_run():
    short = rows(steps=3)
    short[1]["loss"] = math.nan
    d = diagnose_grpo(short, CONFIG)
    assert d.verdict == "nan" and d.findings[0].severity == "error"
    assert diagnose_grpo(rows(steps=3), CONFIG).summary.startswith("too short to judge")


def test_every_condition_is_listed():
    seen = {diagnose_grpo(r, CONFIG).verdict for r in (
        rows(), rows(reward=lambda f: 0.4), rows(reward=lambda f: 0.6 - 0.4 * f),
        rows(kl=lambda f: 0.01 * math.exp(6 * f)), rows(clip=lambda f: 0.35),
        rows(entropy=lambda f: 1.2 * math.exp(-5 * f)), rows(zero=lambda f: 0.75))}
    assert seen <= set(CONDITIONS)


def test_the_run_directory_gets_diagnosis_json(tmp_path):
    write_json(tmp_path / "config.json", {"config": CONFIG, "kind": "grpo"})
    write_jsonl(tmp_path / "metrics.jsonl", rows(reward=lambda f: 0.4))
    assert diagnose_grpo_run(tmp_path).verdict == "reward_flat"
    assert json.loads((tmp_path / "diagnosis.json").read_text())["verdict"] == "reward_flat"
    with pytest.raises(UsageError, match="no metrics.jsonl"):
        diagnose_grpo_run(tmp_path / "missing")
