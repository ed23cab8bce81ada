"""What went right or wrong in a GRPO run, read from its metrics, with advice in its own numbers.

The preference diagnosis (``runs/diagnose.py``) judges a loss curve against where the algorithm
table says it starts; a GRPO loss has no such curve (at ratio 1 it is minus the mean advantage,
about 0 whatever the policy does). A GRPO run is judged by what it logs per step
(``rl/train.py``): ``mean_reward`` and ``reward_std`` (the spread of the batch's scores),
``zero_advantage_frac``, ``kl`` (k3 to the reference), ``clip_frac`` and ``ratio_mean``,
``entropy``, ``loss`` and ``grad_norm``. Each detector looks at one thing and returns a
``Finding`` or None:

- ``nan``: a loss or gradient norm that is not finite (error);
- ``no_signal``: on average half the completions or more had advantage 0 (their group scored
  alike), so they teach nothing (warning);
- ``reward_flat`` / ``reward_falling``: the median mean reward of the last quarter of steps
  against the first quarter's, in units of the batch's score spread (warning);
- ``kl_exploding``: the KL to the reference ends above ``KL_HIGH`` and ``KL_GROWTH`` times
  where it began (warning);
- ``clip_high``: over the last half, the median share of clipped tokens above ``CLIP_HIGH``:
  the policy has moved far from the one that sampled (warning);
- ``clip_zero``: old log-probs were sent (the ratio moved off 1) yet no token was ever clipped:
  the clip bound never acts (info);
- ``entropy_collapse``: the policy's entropy on completion tokens ends below
  ``ENTROPY_DROP`` of where it began (warning).

Runs of fewer than ``MIN_ROWS`` steps are too short for a trend: only ``nan`` is judged.
The verdict is the most severe finding's condition, ties going to the earlier detector.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from preftune.errors import UsageError
from preftune.fsutil import write_json
from preftune.rundir import RunDir
from preftune.runs.diagnose import DIAGNOSIS, Diagnosis, Finding, ranked, run_config

MIN_ROWS = 8
NO_SIGNAL_SHARE = 0.5  # no_signal: this share of completions, on average, had advantage 0
REWARD_RISE = 0.1  # reward_flat: the rise is under this share of the scores' spread
KL_HIGH, KL_GROWTH = 0.5, 10.0
CLIP_HIGH = 0.2
ENTROPY_DROP = 0.2  # entropy_collapse: it ends below this share of where it began
RATIO_MOVED = 1e-3  # |ratio_mean - 1| above this: old log-probs were sent, not the policy's own

Rows = list[Mapping[str, Any]]


def _values(rows: Rows, key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows if isinstance(r.get(key), int | float)])


def _quarters(values: np.ndarray) -> tuple[float, float]:
    """Medians of the first and last quarter (at least 2 values each)."""
    k = max(len(values) // 4, 2)
    return float(np.median(values[:k])), float(np.median(values[-k:]))


def _steps(rows: Rows) -> tuple[int, int]:
    return int(rows[0].get("step", 1)), int(rows[-1].get("step", len(rows)))


def _num(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key)
    return float(value) if isinstance(value, int | float) else default


def detect_nan(rows: Rows, config: Mapping[str, Any]) -> Finding | None:
    for row in rows:
        for key in ("loss", "grad_norm"):
            value = row.get(key)
            if isinstance(value, int | float) and not math.isfinite(value):
                lr = _num(config, "learning_rate", 1e-5)
                return Finding("nan", "error", f"{key} became {value} at step {row.get('step')}",
                               [f"lower the learning rate from {lr:g} to {lr / 2:g}",
                                "check the environment's scores for non-finite values"],
                               (int(row.get("step", 0)), int(row.get("step", 0))))
    return None


def detect_no_signal(rows: Rows, config: Mapping[str, Any]) -> Finding | None:
    idle = _values(rows, "zero_advantage_frac")
    if not len(idle) or float(np.mean(idle)) < NO_SIGNAL_SHARE:
        return None
    return Finding("no_signal", "warning",
                   f"{float(np.mean(idle)):.0%} of completions had advantage 0 (their group "
                   "scored alike): they teach the policy nothing",
                   ["drop groups whose scores are all equal in the environment "
                    "(ensure_scores_are_not_same: true)",
                    "use prompts nearer the policy's ability (neither all solved nor all "
                    "failed), or a reward that grades partial answers"], _steps(rows))


def detect_reward(rows: Rows, config: Mapping[str, Any]) -> Finding | None:
    reward = _values(rows, "mean_reward")
    spread = _values(rows, "reward_std")
    if len(reward) < MIN_ROWS:
        return None
    first, last = _quarters(reward)
    unit = float(np.median(spread)) if len(spread) else 0.0
    if unit <= 0:
        return None  # scores that never vary: no_signal says why
    rise = (last - first) / unit
    if rise >= REWARD_RISE:
        return None
    lr = _num(config, "learning_rate", 1e-5)
    condition = "reward_falling" if rise <= -REWARD_RISE else "reward_flat"
    verb = "fell" if condition == "reward_falling" else "did not rise"
    advice = ([f"lower the learning rate from {lr:g} to {lr / 2:g}",
               "check that the inference server samples from the newest published weights"]
              if condition == "reward_falling" else
              [f"raise the learning rate from {lr:g} to {lr * 2:g}",
               "train longer: reward often starts rising only after tens of steps",
               "check that the inference server samples from the newest published weights"])
    return Finding(condition, "warning",
                   f"the mean reward {verb}: {first:.3g} in the first quarter of steps, "
                   f"{last:.3g} in the last ({rise:+.2f} standard deviations of the scores)",
                   advice, _steps(rows))


def detect_kl(rows: Rows, config: Mapping[str, Any]) -> Finding | None:
    kl = _values(rows, "kl")
    if len(kl) < MIN_ROWS or not np.any(kl > 0):
        return None
    first, last = _quarters(kl)
    if not (last > KL_HIGH and last > KL_GROWTH * max(first, 1e-6)):
        return None
    coef, lr = _num(config, "kl_coef", 0.0), _num(config, "learning_rate", 1e-5)
    advice = [f"raise kl_coef from {coef:g} to {max(coef * 2, 0.01):g}",
              f"lower the learning rate from {lr:g} to {lr / 2:g}"]
    return Finding("kl_exploding", "warning",
                   f"the KL to the reference grew from {first:.3g} to {last:.3g} per token",
                   advice, _steps(rows))


def detect_clip(rows: Rows, config: Mapping[str, Any]) -> Finding | None:
    clip = _values(rows, "clip_frac")
    ratio = _values(rows, "ratio_mean")
    if len(clip) < MIN_ROWS:
        return None
    late = float(np.median(clip[len(clip) // 2:]))
    lr = _num(config, "learning_rate", 1e-5)
    if late > CLIP_HIGH:
        every = int(_num(config, "publish_every", 1))
        advice = [f"lower the learning rate from {lr:g} to {lr / 2:g}"]
        if every > 1:
            advice.append(f"publish weights every step, not every {every}: the sampler's "
                          "policy lags the trained one")
        advice.append("check that the inference server loads each published step")
        return Finding("clip_high", "warning",
                       f"{late:.0%} of completion tokens were clipped (median over the last "
                       "half): the policy is far from the one that sampled them", advice,
                       _steps(rows))
    moved = len(ratio) and float(np.max(np.abs(ratio - 1))) > RATIO_MOVED
    if moved and not np.any(clip > 0):
        eps = _num(config, "clip_eps", 0.2)
        return Finding("clip_zero", "info",
                       f"no completion token was ever clipped, though the ratio to the "
                       f"sampler moved: updates stay well inside clip_eps {eps:g}",
                       [f"if reward rises slowly, raise the learning rate from {lr:g} to "
                        f"{lr * 2:g}"], _steps(rows))
    return None


def detect_entropy(rows: Rows, config: Mapping[str, Any]) -> Finding | None:
    entropy = _values(rows, "entropy")
    if len(entropy) < MIN_ROWS:
        return None
    first, last = _quarters(entropy)
    if not (first > 0 and last < ENTROPY_DROP * first):
        return None
    high = config.get("clip_eps_high")
    eps = _num(config, "clip_eps", 0.2)
    advice = [f"lower the learning rate from {_num(config, 'learning_rate', 1e-5):g} to "
              f"{_num(config, 'learning_rate', 1e-5) / 2:g}"]
    if high is None or float(high) <= eps:
        advice.append(f"clip higher (DAPO): set clip_eps_high to {max(eps + 0.08, 0.28):g}")
    advice.append("sample at a higher temperature in the environment")
    return Finding("entropy_collapse", "warning",
                   f"the policy's entropy on completion tokens fell from {first:.3g} to "
                   f"{last:.3g} nats: it samples nearly the same completion every time",
                   advice, _steps(rows))


DETECTORS: tuple[Callable[[Rows, Mapping[str, Any]], Finding | None], ...] = (
    detect_nan, detect_no_signal, detect_reward, detect_kl, detect_clip, detect_entropy)
CONDITIONS = ("healthy", "nan", "no_signal", "reward_flat", "reward_falling", "kl_exploding",
              "clip_high", "clip_zero", "entropy_collapse")


def diagnose_grpo(rows: Sequence[Mapping[str, Any]],
                  config: Mapping[str, Any] | None = None) -> Diagnosis:
    """Diagnose a GRPO run from its metrics rows and its config (GRPOConfig's values)."""
    train = [r for r in rows if "loss" in r]
    cfg = config or {}
    detectors = DETECTORS if len(train) >= MIN_ROWS else (detect_nan,)
    found = [f for f in (detect(train, cfg) for detect in detectors) if f is not None]
    findings, alarm = ranked(found)
    if alarm is not None:
        return alarm
    if len(train) < MIN_ROWS:
        return Diagnosis("healthy", f"too short to judge a trend ({len(train)} steps; it takes "
                         f"{MIN_ROWS})", findings)
    reward = _values(train, "mean_reward")
    first, last = _quarters(reward) if len(reward) else (math.nan, math.nan)
    summary = f"healthy: mean reward from {first:.3g} to {last:.3g}; no change needed"
    if findings:
        summary += "; note: " + ", ".join(f.condition for f in findings)
    return Diagnosis("healthy", summary, findings)


def diagnose_grpo_run(run_dir: Path, write: bool = True) -> Diagnosis:
    """Diagnose the GRPO run in ``run_dir``; with ``write``, save ``diagnosis.json``."""
    run = RunDir(Path(run_dir))
    if not run.metrics_path.is_file():
        raise UsageError(f"cannot diagnose {run.path}: it has no metrics.jsonl",
                         ["pass a run directory written by `preftune rl train`"])
    diagnosis = diagnose_grpo(run.metrics(), run_config(run))
    if write:
        write_json(run.path / DIAGNOSIS, diagnosis.to_dict())
    return diagnosis
