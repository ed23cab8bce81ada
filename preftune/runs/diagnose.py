"""What went right or wrong in a run, read from its metrics, with advice in the run's own numbers.

Each detector looks at one thing (where the loss started, its trend, its swings, eval against
train accuracy, memory, throughput, rewards) and returns a ``Finding`` or None; ``DETECTORS``
lists them in priority order. The verdict is the condition of the most severe finding, ties
going to the earlier detector; a run whose findings are all "info" is healthy. The rules and the
advice follow the DPO hyperparameter tuning guide: loss diverges → lower the learning rate,
beta to half its default, warmup 5 → 20; oscillates → lower the learning rate, more gradient
accumulation; ...

What a run of each algorithm should look like comes from the algorithm table
(``preftune.losses.table``), never from a list of names here: the loss at the first step is
``start_loss`` of the run's algorithms, loss weights and loss parameters (log 2 for DPO,
1/(4 beta^2) for IPO, a mixture's weighted sum, unknown for SimPO, ORPO and SFT); whether a
beta or an SFT term is there to tune and which data the run trains on come from it too.

The statistics are robust so that a noisy healthy run raises no alarm: rows logged more often
than every 10 steps are averaged into 10-step blocks first; the trend is a 5-block rolling
median, the noise a median of second differences, slow drifts medians of quarters or a
Theil-Sen line; every threshold is relative to the loss's own scale and above its noise.
Swings faster than a block are judged on the rows as logged (``swing``).

Advice names the run's value and the one to try (``lower the learning rate from 5e-05 to
2.5e-05``); where config.json lacks the value it says what to change without numbers.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from preftune.config import ALIASES, TrainConfig, normalize_algo
from preftune.errors import ConfigError, UsageError
from preftune.fsutil import write_json
from preftune.losses.table import (
    ALGORITHMS,
    HYPERPARAMETERS,
    data_kind,
    describe,
    hyperparameters,
    start_loss,
)
from preftune.losses.types import LossParams
from preftune.rundir import RunDir

CONDITIONS = ("healthy", "diverging", "oscillating", "plateaued", "not_learning", "nan",
              "overfitting", "unexpected_start", "rewards_falling", "memory_growing",
              "throughput_falling")
SEVERITIES = ("info", "warning", "error")
DIAGNOSIS = "diagnosis.json"

MIN_ROWS = 8  # fewer train rows than this: too short to judge a trend
BLOCK_STEPS = 10  # the loss is judged in means over this many steps (the default logging)
LN2 = math.log(2)  # DPO's loss when the policy prefers neither response (zero margin)

# unexpected start: the first logged loss lies this far from the table's start value (relative
# to it), and further than 3 row-to-row noises and twice the swings around the trend. Below is
# given more room: the first row already averages logging_steps steps of learning.
START_ABOVE = 0.10
START_BELOW = 0.50
# diverging: the loss ends this far above the lowest point of its trend (all three must hold)
DIVERGE_REL = 0.25  # ... relative to that lowest point
DIVERGE_OF_START = 0.10  # ... relative to where the loss started
DIVERGE_NOISE = 4.0  # ... in units of the row-to-row noise
BLOWUP, BLOWUP_NOISE = 3.0, 10.0  # or the last row alone is 3x that point and 10 noises above
# oscillating, three ways (``detect_oscillating`` says why each):
# erratic: the loss jumps from one row to the next by this share of its level (upper quartile,
# as a standard deviation)
ERRATIC_REL = 0.25
# swinging: around an 11-row centred rolling mean, the median |row - trend| is this share of the
# loss's level and of the trend's whole change, and the residuals come back: their
# autocorrelation at some lag of 1-5 rows is -SWING_COMEBACK or lower, and lower than white
# noise's gets by chance (about -0.13 around such a mean, give or take 1/sqrt(rows): 3 of those)
SWING_WINDOW = 11
SWING_OF_LEVEL = 0.15
SWING_OF_TREND = 0.25
SWING_COMEBACK = 0.4
WHITE_COMEBACK = 0.13
# slow swings: the trend rebounds by SWING_REL of its trough (and SWING_NOISE noises) at least
# SWINGS times, falling back each time
SWING_REL = 0.20
SWING_NOISE = 3.0
SWINGS = 2
# not learning: the last third stays within this share of the starting loss
FLAT_REL = 0.03
MARGIN_GROWTH = 0.1  # ... unless the reward margin grew by this much (it is learning)
# plateaued: over the last 60% of the rows the loss fell less than this share of what it fell
# in the first 40%, and it stalled at a poor level: a loss still PLATEAU_HIGH of its start
# and, where logged, train accuracy below PLATEAU_ACCURACY (the guide expects 80-85%)
PLATEAU_SPAN = 0.6
PLATEAU_LATE = 0.15
PLATEAU_ACCURACY = 0.75
PLATEAU_HIGH = 0.65
# overfitting: eval accuracy this far below its best (absolute), or eval loss this far above
# its lowest (relative), while the train metric kept improving
OVERFIT_ACCURACY = 0.05
OVERFIT_LOSS = 0.15
# memory and throughput: each quarter of the run (after the first 10%) moves the same way by
# this much, and the last quarter differs from the first by the total
MEMORY_STEP, MEMORY_TOTAL = 0.015, 0.08
THROUGHPUT_STEP, THROUGHPUT_TOTAL = 0.03, 0.15


@dataclass(frozen=True)
class Finding:
    """One thing seen in a run: what, how bad, the numbers that show it, and what to change."""

    condition: str  # one of CONDITIONS
    severity: str  # "info" | "warning" | "error"
    evidence: str  # what was seen, with the run's numbers
    advice: list[str]  # what to change, with the run's numbers where the config gives them
    steps: tuple[int, int] | None = None  # the step range concerned

    def to_dict(self) -> dict[str, Any]:
        return {"condition": self.condition, "severity": self.severity,
                "evidence": self.evidence, "advice": list(self.advice),
                "steps": list(self.steps) if self.steps is not None else None}


@dataclass(frozen=True)
class Diagnosis:
    verdict: str  # "healthy" or the most severe finding's condition
    summary: str  # one line for the training summary
    findings: list[Finding]  # most severe first

    def to_dict(self) -> dict[str, Any]:
        """The content of diagnosis.json."""
        return {"verdict": self.verdict, "summary": self.summary,
                "findings": [f.to_dict() for f in self.findings]}


# ------------------------------------------------------------------------------ the series


@dataclass(frozen=True)
class Series:
    """A run's train rows as arrays, cut at the first non-finite loss, and its eval rows."""

    rows: list[Mapping[str, Any]]  # every train row, non-finite ones included
    evals: list[Mapping[str, Any]]
    steps: np.ndarray  # (N,) the last step of each block up to the first non-finite loss
    loss: np.ndarray  # (N,) the mean loss of each block (``per_block``)
    trend: np.ndarray  # (N,) 5-row centred rolling median of the loss
    noise: float  # the loss's row-to-row noise, as a standard deviation (``row_noise``)
    raw_steps: np.ndarray  # (R,) the step of each train row up to the first non-finite loss
    raw_loss: np.ndarray  # (R,) its loss as logged (R >= N: blocks average rows)

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, Any]]) -> Series:
        train = [r for r in rows if _number(r, "loss") is not None]
        evals = [r for r in rows if any(str(key).startswith("eval/") for key in r)]
        losses = [_number(r, "loss") or 0.0 for r in train]
        cut = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
        raw_loss = np.asarray(losses[:cut], dtype=float)
        raw_steps = np.asarray([_step(r, i) for i, r in enumerate(train[:cut])], dtype=float)
        steps, loss = per_block(raw_steps, raw_loss)
        return cls(train, evals, steps, loss, rolling_median(loss), row_noise(loss),
                   raw_steps, raw_loss)

    @property
    def n(self) -> int:
        return len(self.loss)

    @cached_property
    def swings(self) -> tuple[Swing | None, Swing | None]:
        """The swings around the trend of the rows as logged and of the blocks (None where
        too few; the blocks' are None when blocks are the rows)."""
        blocked = len(self.raw_loss) != len(self.loss)
        return (swing(self.raw_steps, self.raw_loss),
                swing(self.steps, self.loss) if blocked else None)

    @property
    def swinging(self) -> bool:
        """Whether the rows or the blocks swing back and forth (``Swing.swinging``)."""
        return any(sw is not None and sw.swinging for sw in self.swings)

    @property
    def swing_amplitude(self) -> float:
        """The larger typical swing of the two (0 where neither could be measured)."""
        return max((sw.amplitude for sw in self.swings if sw is not None), default=0.0)

    @property
    def n_rows(self) -> int:
        """Train rows before the first non-finite loss (``n`` counts blocks of them)."""
        return next((i for i, r in enumerate(self.rows)
                     if not math.isfinite(_number(r, "loss") or 0.0)), len(self.rows))

    @property
    def start(self) -> float:
        """Where the loss started: the median of the first three blocks."""
        return float(np.median(self.loss[:3]))

    def metric(self, name: str, skip: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a train metric's finite values, in the rows the loss is finite."""
        pairs = [(_step(r, i), _number(r, name)) for i, r in enumerate(self.rows[:self.n_rows])]
        kept = [(s, v) for s, v in pairs[skip:] if v is not None and math.isfinite(v)]
        return (np.asarray([s for s, _ in kept], dtype=float),
                np.asarray([v for _, v in kept], dtype=float))

    def eval_metric(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(_step(r, i), _number(r, name)) for i, r in enumerate(self.evals)]
        kept = [(s, v) for s, v in pairs if v is not None and math.isfinite(v)]
        return (np.asarray([s for s, _ in kept], dtype=float),
                np.asarray([v for _, v in kept], dtype=float))


def _number(row: Mapping[str, Any], key: str) -> float | None:
    """The row's value as a float (NaN and inf included); None when absent or not a number."""
    value = row.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _step(row: Mapping[str, Any], index: int) -> int:
    step = _number(row, "step")
    return int(step) if step is not None and math.isfinite(step) else index + 1


def per_block(steps: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows logged more often than every BLOCK_STEPS steps, averaged into blocks of about that
    many steps, so every rule sees the noise of the same span whatever logging_steps was."""
    if len(steps) < 2:
        return steps, loss
    interval = float(np.median(np.diff(steps)))
    size = max(1, round(BLOCK_STEPS / interval)) if interval > 0 else 1
    if size == 1:
        return steps, loss
    blocks = len(loss) // size
    first = len(loss) - blocks * size  # a partial block is dropped at the start, not the end
    return steps[first + size - 1::size], loss[first:].reshape(blocks, size).mean(axis=1)


def rolling_median(x: np.ndarray, width: int = 5) -> np.ndarray:
    """Centred rolling median; the windows shrink at the ends rather than repeat a value."""
    if len(x) == 0:
        return x.copy()
    half = width // 2
    padded = np.pad(x.astype(float), half, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)  # (N, width)
    return np.nanmedian(windows, axis=1)


def row_noise(x: np.ndarray, quantile: float = 0.5, order: int = 2) -> float:
    """Standard deviation of the row-to-row noise, from a quantile of the absolute ``order``-th
    differences (less their median). Second differences cancel a straight or gently curving
    trend; at the median a few outlying rows cannot move the estimate."""
    if len(x) < order + 2:
        return 0.0
    diffs = np.diff(x, order)  # (N-order,) ~ N(0, C(2 order, order) sigma^2) for white noise
    spread = np.quantile(np.abs(diffs - np.median(diffs)), quantile)
    z = NormalDist().inv_cdf(0.5 + quantile / 2)
    return float(spread / (z * math.sqrt(math.comb(2 * order, order))))


def theil_sen(x: np.ndarray, y: np.ndarray, max_points: int = 200) -> tuple[float, float]:
    """(slope, intercept) of the Theil-Sen line: the median of pairwise slopes, which a few
    outlying rows cannot tilt. Long series are first reduced to medians of equal blocks."""
    if len(x) > max_points:
        x = np.asarray([np.median(b) for b in np.array_split(x, max_points)])
        y = np.asarray([np.median(b) for b in np.array_split(y, max_points)])
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    keep = dx != 0
    slope = float(np.median((y[j] - y[i])[keep] / dx[keep])) if keep.any() else 0.0
    return slope, float(np.median(y - slope * x))


def rolling_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Centred rolling mean; the windows shrink at the ends rather than repeat a value."""
    half = width // 2
    padded = np.pad(x.astype(float), half, constant_values=np.nan)
    return np.nanmean(np.lib.stride_tricks.sliding_window_view(padded, width), axis=1)


@dataclass(frozen=True)
class Swing:
    """How a loss moves around its own trend, a centred ``SWING_WINDOW``-row rolling mean."""

    amplitude: float  # median |loss - trend|: the typical half-swing
    level: float  # median |trend|, at least a quarter of the start: the loss's scale
    change: float  # max - min of the trend: how far the loss really moved
    comeback: float  # the lowest autocorrelation of loss - trend over lags 1..WINDOW // 2
    lag: int  # the lag (rows) where it is lowest: half the swings' period
    rows: int  # how many rows were judged
    step_interval: float  # median steps between rows

    @property
    def swinging(self) -> bool:
        """Swings large against the loss and its trend, that come back (``detect_oscillating``)."""
        return (self.amplitude >= SWING_OF_LEVEL * self.level
                and self.amplitude >= SWING_OF_TREND * self.change
                and self.comeback <= -max(SWING_COMEBACK,
                                          WHITE_COMEBACK + 3 / math.sqrt(self.rows)))

    @property
    def period_steps(self) -> float:
        return 2 * self.lag * self.step_interval


def swing(steps: np.ndarray, loss: np.ndarray, width: int = SWING_WINDOW) -> Swing | None:
    """The loss's swings around a centred rolling mean of ``width`` rows: slower moves are
    the trend's, faster ones the swings'. None for fewer than ``width`` rows."""
    if len(loss) < width:
        return None
    trend = rolling_mean(loss, width)  # (R,)
    residual = loss - trend  # (R,)
    energy = float(residual @ residual)
    if energy == 0:
        return None
    acf = [float(residual[:-k] @ residual[k:]) / energy for k in range(1, width // 2 + 1)]
    lag = int(np.argmin(acf)) + 1
    start = float(np.median(loss[:3]))
    return Swing(amplitude=float(np.median(np.abs(residual))),
                 level=max(float(np.median(np.abs(trend))), 0.25 * abs(start)),
                 change=float(np.max(trend) - np.min(trend)), comeback=acf[lag - 1],
                 lag=lag, rows=len(loss), step_interval=float(np.median(np.diff(steps))))


def quarter_medians(values: np.ndarray) -> list[float]:
    return [float(np.median(chunk)) for chunk in np.array_split(values, 4)]


def rebounds(trend: np.ndarray, min_rise: Callable[[float], float]) -> list[tuple[int, int]]:
    """(trough, peak) indices of each rise of ``trend`` by at least ``min_rise(trough)`` that
    fell back by as much afterwards: completed swings, not a final climb."""
    swings: list[tuple[int, int]] = []
    low, high, rising = 0, 0, False
    for i, value in enumerate(trend):
        if not rising:
            if value < trend[low]:
                low = i
            elif value - trend[low] >= min_rise(trend[low]):
                rising, high = True, i
        else:
            if value > trend[high]:
                high = i
            elif trend[high] - value >= min_rise(trend[low]):
                swings.append((low, high))
                rising, low = False, i
    return swings


# ------------------------------------------------------------------------------ advice


@dataclass(frozen=True)
class Objective:
    """What the run trained, as the algorithm table knows it."""

    names: tuple[str, ...]  # table names: one algorithm, or the parts of a mixture
    weights: tuple[float, ...] | None  # a mixture's loss_weights (None: 1 each)
    params: LossParams

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Objective | None:
        """The objective of a run's config; None where it names no algorithm the table has.

        The config is validated as ``TrainConfig`` (so fields an older config.json lacks take
        their defaults, the algorithm's included); one that no longer validates as a whole
        still gives its algorithms and whichever loss parameters are valid."""
        if config.get("algo") is None:
            return None
        known = {k: v for k, v in config.items() if k in TrainConfig.model_fields or k in ALIASES}
        try:
            cfg = TrainConfig.build(known)
        except ConfigError:
            pass
        else:
            weights = tuple(cfg.loss_weights) if cfg.loss_weights is not None else None
            return cls(cfg.algorithms, weights, cfg.loss_params())
        try:
            algo = normalize_algo(config["algo"])
        except ValueError:
            return None
        if not isinstance(algo, (str, list)):
            return None
        names = (algo,) if isinstance(algo, str) else tuple(algo)
        given = config.get("loss_weights")
        try:
            weights = tuple(float(w) for w in given) if given is not None else None
        except (TypeError, ValueError):
            weights = None
        if weights is not None and len(weights) != len(names):
            weights = None
        return cls(names, weights, _loss_params(config))

    @property
    def label(self) -> str:
        """``dpo``, or ``0.8 dpo + 0.2 bco_pair + 1 sft``."""
        return describe(self.names, self.weights)

    @property
    def start(self) -> float | None:
        """The loss at the first step, policy = reference; None where it depends on the data."""
        return start_loss(self.names, self.params, self.weights)

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        return hyperparameters(self.names)

    @property
    def needs_reference(self) -> bool:
        return any(ALGORITHMS[n].needs_reference for n in self.names)

    @property
    def data(self) -> str:
        try:
            return data_kind(self.names)
        except ValueError:  # a mixture of kinds, which only a hand-edited config holds
            return "paired"

    def start_inputs(self) -> list[str]:
        """The loss parameters the start value follows from, as ``beta 0.1``: those whose
        change moves ``start``."""
        start = self.start
        inputs = []
        for name in self.hyperparameters:
            value = getattr(self.params, name, None)
            if start is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            try:
                change: dict[str, Any] = {name: value / 2 if value else 0.1}
                moved = replace(self.params, **change)
                other = start_loss(self.names, moved, self.weights)
            except ValueError:
                continue
            if other is not None and not math.isclose(other, start):
                inputs.append(f"{name} {value:g}")
        return inputs


def _loss_params(config: Mapping[str, Any]) -> LossParams:
    """LossParams from the config's fields that are valid, the defaults for the others."""
    values: dict[str, Any] = {}
    for name in LossParams.__dataclass_fields__:
        if name not in config:
            continue
        try:
            LossParams(**{**values, name: config[name]})
        except (TypeError, ValueError):
            continue
        values[name] = config[name]
    return LossParams(**values)


def _numbers(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


class Knobs:
    """The run's hyperparameters and its objective, and advice phrased in them: the run's value
    and the one to try, or what to change without numbers where config.json lacks the value."""

    def __init__(self, config: Mapping[str, Any] | None) -> None:
        self.config = dict(config or {})
        self.objective = Objective.of(self.config)

    def _num(self, name: str) -> float | None:
        value = _number(self.config, name)
        return value if value is not None and math.isfinite(value) else None

    def reads(self, hyperparameter: str) -> bool:
        """Whether the run's loss has this hyperparameter (True where the algorithm is unknown)."""
        return self.objective is None or hyperparameter in self.objective.hyperparameters

    def default_beta(self) -> float:
        """The table's recommended beta for the run's algorithm (the first of a mixture's
        that recommends one, as the config's layering does), else DPO's."""
        names = self.objective.names if self.objective is not None else ()
        return next((float(ALGORITHMS[n].defaults["beta"]) for n in names
                     if "beta" in ALGORITHMS[n].defaults), float(HYPERPARAMETERS["beta"].default))

    def learning_rate(self, factor: float, verb: str) -> str:
        lr = self._num("learning_rate")
        return f"{verb} from {lr:g} to {lr * factor:g}" if lr is not None else verb

    def lower_beta(self) -> str | None:
        """Half the smaller of the run's beta and the algorithm's recommended one: the guide's
        DPO beta 0.1 or 0.2 to 0.05, SimPO's 2 to 1."""
        if not self.reads("beta"):
            return None  # no preference term
        beta = self._num("beta")
        if beta is None:
            return "lower beta (e.g. to half its value)"
        return f"lower beta from {beta:g} to {min(beta, self.default_beta()) / 2:g}"

    def raise_beta(self) -> str | None:
        if not self.reads("beta"):
            return None
        beta = self._num("beta")
        return f"raise beta from {beta:g} to {beta * 2:g}" if beta is not None else \
            "raise beta (e.g. to twice its value)"

    def more_warmup(self) -> str:
        warmup = self._num("warmup_steps")
        if warmup is None:
            return "raise warmup_steps (e.g. from 5 to 20)"
        return f"raise warmup_steps from {warmup:.0f} to {max(20, 2 * warmup):.0f}"

    def more_accumulation(self) -> str:
        accum, batch = self._num("grad_accum"), self._num("batch_size")
        if accum is None:
            return "raise grad_accum (e.g. double it) for a larger, less noisy effective batch"
        text = f"double gradient accumulation: grad_accum from {accum:.0f} to {2 * accum:.0f}"
        if batch is not None:
            text += f" (effective batch from {batch * accum:.0f} to {2 * batch * accum:.0f})"
        return text

    def train_longer(self) -> str:
        max_steps, epochs = self._num("max_steps"), self._num("epochs")
        if max_steps is not None:  # it ends the run whatever epochs says
            return f"train longer: max_steps from {max_steps:.0f} to {2 * max_steps:.0f}"
        return (f"train longer: epochs from {epochs:.0f} to {epochs + 2:.0f}" if epochs is not None
                else "train longer (e.g. 2 more epochs)")

    def fewer_epochs(self, best_epoch: float, best_step: int) -> str:
        max_steps, epochs = self._num("max_steps"), self._num("epochs")
        if max_steps is not None:
            return f"stop where eval peaked: max_steps from {max_steps:.0f} to {best_step}"
        if epochs is None:
            return f"train fewer epochs: eval peaked at epoch {best_epoch:.2g} (step {best_step})"
        to = max(1, math.ceil(best_epoch))
        if to >= epochs:
            if epochs <= 1:
                return f"stop where eval peaked: max_steps from unset to {best_step}"
            to = int(epochs) - 1
        return f"train fewer epochs: epochs from {epochs:.0f} to {to} (eval peaked at epoch " \
               f"{best_epoch:.2g})"

    def sft_term(self) -> str | None:
        """More weight on the chosen responses' NLL: the mixture's sft part where it has one,
        else sft_weight; None for a loss that has neither (ORPO's NLL is built in)."""
        when = "if generations get worse, "
        obj = self.objective
        if obj is not None and "sft" in obj.names and len(obj.names) > 1:
            weights = list(obj.weights or [1.0] * len(obj.names))
            raised = list(weights)
            part = obj.names.index("sft")
            raised[part] = 2 * weights[part] if weights[part] > 0 else 0.1
            return when + f"weight the mixture's sft part more: loss_weights from " \
                          f"{_numbers(weights)} to {_numbers(raised)}"
        if not self.reads("sft_weight"):
            return None
        weight = self._num("sft_weight")
        if weight is None:
            return when + "add an SFT term on the chosen responses (e.g. sft_weight=0.1)"
        if weight == 0:
            return when + "add an SFT term on the chosen responses: sft_weight from 0 to 0.1"
        return when + f"raise the SFT term: sft_weight from {weight:g} to {2 * weight:g}"

    def dtype(self) -> str:
        dtype = self.config.get("dtype")
        if dtype == "fp16":
            return "the run used dtype fp16, whose narrow range overflows easily: dtype fp16 " \
                   "-> bf16 (or fp32)"
        if dtype == "auto":
            return "the run used dtype auto: if that resolved to fp16 (a GPU without bf16), " \
                   "set dtype from auto to bf16 or fp32"
        if dtype in ("bf16", "fp32"):
            return f"the run used dtype {dtype}, so fp16 overflow is not the cause; look at " \
                   "the learning rate and the data"
        return "check the dtype: fp16 overflows easily, prefer bf16 or fp32"

    def data_doubt(self) -> str:
        """What may be wrong with data of the kind the run trains on, when nothing is learnt."""
        obj = self.objective
        if obj is not None and obj.data == "unpaired":
            return "the desirable/undesirable labels may be wrong, or the completions " \
                   "unrelated to the prompt"
        if obj is not None and not self.reads("beta"):  # no preference term: SFT
            return "the chosen responses may be empty, truncated or unrelated to the prompt"
        return "chosen and rejected may be swapped, identical or unrelated to the prompt"

    def check_data(self, why: str) -> str:
        dataset = self.config.get("dataset")
        command = f"preftune validate {dataset}" if dataset else "preftune validate DATASET"
        return f"check the data ({why}): {command}"

    def more_data(self) -> str:
        unit = "examples" if self.objective is not None and \
            self.objective.data == "unpaired" else "pairs"
        n = self._num("n_examples")
        if n is not None:
            return f"train on more {unit}: n_examples from {n:.0f} to {2 * n:.0f} (or unset " \
                   "it to use them all)"
        return f"add more (or more varied) training {unit}"

    def smaller_batches(self) -> str:
        batch, accum = self._num("batch_size"), self._num("grad_accum")
        length = self._num("max_length")
        if batch is not None and batch > 1 and accum is not None:
            return (f"relieve memory: batch_size from {batch:.0f} to {batch // 2:.0f} and "
                    f"grad_accum from {accum:.0f} to {2 * accum:.0f} keep the effective batch")
        checkpointing = self.config.get("gradient_checkpointing")
        also = ("" if checkpointing is True else ", or gradient_checkpointing from false to true"
                if checkpointing is False else ", or gradient_checkpointing=true")
        if length is not None:
            return f"relieve memory: max_length from {length:.0f} to {length * 3 // 4:.0f}{also}"
        return "relieve memory: a smaller batch_size (more grad_accum) or max_length" + also

    def save_checkpoints(self, last_step: int) -> str:
        """So that a crash (out of memory) loses little: the run's save_steps."""
        until = "until it is fixed, long runs risk running out of memory: "
        save = self._num("save_steps")
        if save is not None:
            return until + f"a crash resumes from the last checkpoint, every {save:.0f} steps " \
                           "(save_steps)"
        if "save_steps" in self.config:  # None: checkpoints at epoch ends only
            every = max(10, round(last_step / 100) * 10)
            return until + ("save checkpoints so a crash can resume: save_steps from unset to "
                            f"{every}")
        return until + "save checkpoints (save_steps) so a crash can resume"

    def log_every_step(self) -> str | None:
        logging = self._num("logging_steps")
        if logging is None:
            return "log every step to see where the loss starts: logging_steps=1"
        if logging <= 1:
            return None
        return f"log every step to see where the loss starts: logging_steps from {logging:.0f} to 1"

    def check_reference(self, expected: float) -> str | None:
        if self.objective is None or not self.objective.needs_reference:
            return None
        model = self.config.get("model")
        which = f" ({model})" if model else ""
        return f"check that the reference is the model training starts from{which}: only " \
               f"then does the loss start at {expected:.3g}"


# ------------------------------------------------------------------------------ detectors


Detector = Callable[[Series, Knobs], Finding | None]


def _given(*lines: str | None) -> list[str]:
    """The advice lines that apply (a knob the algorithm lacks gives None)."""
    return [line for line in lines if line]


def detect_nan(s: Series, k: Knobs) -> Finding | None:
    """A non-finite loss or gradient norm in a train row, or a non-finite eval loss."""
    previous: tuple[int, float] | None = None
    for i, row in enumerate([*s.rows, *s.evals]):
        for key in ("loss", "grad_norm", "eval/loss"):
            value = _number(row, key)
            if value is not None and not math.isfinite(value):
                step = _step(row, i)
                before = (f"; it was {previous[1]:.3g} at step {previous[0]}"
                          if previous is not None and key == "loss" else "")
                last = max([step] + [_step(r, j) for j, r in enumerate(s.rows)])
                return Finding("nan", "error", f"{key} became {value} at step {step}{before}",
                               [k.learning_rate(0.5, "lower the learning rate"), k.dtype(),
                                k.check_data("an empty or truncated response can blow the "
                                             "log-probabilities up")],
                               (step, last))
        loss = _number(row, "loss")
        if loss is not None:
            previous = (_step(row, i), loss)
    return None


def detect_diverging(s: Series, k: Knobs) -> Finding | None:
    """The last rows sit well above the lowest point of the trend, a rise larger than any
    rebound before that point and than twice the typical swing around the trend (a swing like
    the others is oscillation); or the very last row blew up, as rows do just before a NaN
    stops a run."""
    x, t = s.loss, s.trend
    low_i = int(np.argmin(t[:-3]))
    low, tail, last = float(t[low_i]), float(np.median(x[-3:])), float(x[-1])
    advice = _given(k.learning_rate(0.5, "lower the learning rate"), k.lower_beta(),
                    k.more_warmup())
    span = (int(s.steps[low_i]), int(s.steps[-1]))
    if last >= BLOWUP * abs(low) and last - low >= BLOWUP_NOISE * s.noise:
        evidence = (f"loss jumped to {last:.3g} at step {span[1]}, {last / abs(low):.0f}x its "
                    f"lowest {low:.3g} (step {span[0]})")
        return Finding("diverging", "error", evidence, advice, span)
    rise = tail - low
    if rise < max(DIVERGE_REL * abs(low), DIVERGE_OF_START * abs(s.start),
                  DIVERGE_NOISE * s.noise, 2 * s.swing_amplitude):
        return None  # within the noise, or within the swings around the trend
    before = t[:low_i + 1]
    if rise < 2 * float(np.max(before - np.minimum.accumulate(before))):
        return None
    evidence = (f"loss rose {100 * rise / abs(low):.0f}% over steps {span[0]}-{span[1]} "
                f"({low:.3g} -> {tail:.3g})")
    return Finding("diverging", "error", evidence, advice, span)


def detect_oscillating(s: Series, k: Knobs) -> Finding | None:
    """The loss swings more than its trend explains, in one of three ways, checked in order.

    Swinging: around a centred 11-row rolling mean, the typical |row - trend| (median) is at
    least SWING_OF_LEVEL (15%) of the loss's level and SWING_OF_TREND (25%) of the trend's whole
    change (max - min), and the swings come back: the autocorrelation of row - trend at some lag
    of 1-5 rows is -SWING_COMEBACK (-0.4) or lower, as where a swing up is followed, half a
    period later, by one down (-0.5 for swings of 3 rows, -1 for 2 or 4). White noise around
    such a mean correlates at about -0.13 at those lags, give or take 1/sqrt(rows), so short
    runs need -(0.13 + 3/sqrt(rows)): -0.55 at 50 rows. A falling loss with noise has small
    residuals against its change; a flat loss with small noise has small residuals against its
    level; a noisy loss logged every step has large ones that do not come back (white noise is
    uncorrelated at every lag), which its 10-step means then judge. Counting sign changes of
    successive differences cannot tell swings from that noise: white noise turns two rows in
    three. Checked on the rows as logged (swings of 2-10 rows) and again on the 10-step blocks
    where those average several rows (swings of 2-10 blocks).

    Erratic: rows jump from one to the next by ERRATIC_REL (25%) of the loss's level or more
    (first differences at the upper quartile, as a standard deviation, on the 10-step blocks),
    in no rhythm: spikes in a fifth of the rows or more.

    Slow swings: the trend itself rebounds by SWING_REL (20%) of its trough, and SWING_NOISE (3)
    noises, at least SWINGS (2) times, falling back each time."""
    advice = _given(k.learning_rate(0.5, "lower the learning rate"), k.more_accumulation(),
                    k.lower_beta())
    for sw in s.swings:
        if sw is not None and sw.swinging:
            steps = (int(s.raw_steps[0]), int(s.raw_steps[-1]))
            evidence = (f"loss swings ±{sw.amplitude:.2g} around its trend, up and back down "
                        f"about every {sw.period_steps:.0f} steps, over steps {steps[0]}-"
                        f"{steps[1]}: {100 * sw.amplitude / sw.level:.0f}% of its level "
                        f"{sw.level:.3g}, while the trend moved {sw.change:.2g} in all")
            return Finding("oscillating", "warning", evidence, advice, steps)

    x, t = s.loss, s.trend
    floor = 0.25 * abs(s.start)  # near zero loss, judge the scatter against the start instead
    scale = np.maximum(np.abs(t), floor)
    # first differences at the upper quartile: spikes in a fifth of the rows count, a few don't
    erratic = row_noise(x / scale, quantile=0.75, order=1)
    span = (int(s.steps[0]), int(s.steps[-1]))
    if erratic >= ERRATIC_REL:
        evidence = (f"loss jumps ±{100 * erratic:.0f}% from row to row over steps "
                    f"{span[0]}-{span[1]} (typical deviation {s.noise:.2g} at a loss of "
                    f"{float(np.median(t)):.3g})")
        return Finding("oscillating", "warning", evidence, advice, span)

    def min_rise(trough: float) -> float:
        return max(SWING_REL * abs(trough), 0.05 * abs(s.start), SWING_NOISE * s.noise)

    swings = rebounds(t, min_rise)
    if len(swings) < SWINGS:
        return None
    lows = [float(t[a]) for a, _ in swings]
    highs = [float(t[b]) for _, b in swings]
    span = (int(s.steps[swings[0][0]]), int(s.steps[-1]))
    evidence = (f"loss swung up and back down {len(swings)} times over steps {span[0]}-"
                f"{span[1]} (troughs {min(lows):.3g}-{max(lows):.3g}, peaks "
                f"{min(highs):.3g}-{max(highs):.3g})")
    return Finding("oscillating", "warning", evidence, advice, span)


@dataclass(frozen=True)
class StartGap:
    """Where the run's loss started against where the table says its objective starts."""

    objective: Objective
    expected: float  # the table's start value
    first: float  # the first logged loss
    tolerance: float  # on the side ``first`` lies (``_start_gap``)

    @property
    def far(self) -> bool:
        return abs(self.first - self.expected) > self.tolerance


def _start_gap(s: Series, k: Knobs) -> StartGap | None:
    """None where the table's start value depends on the data or the config names no
    algorithm. The first logged loss should lie within START_ABOVE (10%) of the start value
    above it, START_BELOW (50%) below it, and either way within 3 row-to-row noises and twice
    the swings around the trend."""
    objective = k.objective
    expected = objective.start if objective is not None else None
    if objective is None or expected is None or len(s.raw_loss) == 0:
        return None
    first = float(s.raw_loss[0])
    slack = max(3 * row_noise(s.raw_loss), 2 * s.swing_amplitude, 0.01)
    rel = START_ABOVE if first > expected else START_BELOW
    return StartGap(objective, expected, first, max(rel * abs(expected), slack))


def _reference(s: Series, k: Knobs) -> tuple[float, str]:
    """The loss of a model that has learnt nothing: the table's start value for the run's
    algorithms where the run began near it; else where the run began. Without a config, a run
    that began near log 2 is taken for DPO."""
    gap = _start_gap(s, k)
    if gap is not None and not gap.far:
        if math.isclose(gap.expected, LN2):
            return LN2, "log 2 = 0.693, the loss of a policy that prefers neither response"
        return gap.expected, f"{gap.expected:.3g}, the {gap.objective.label} loss at the " \
                             "first step"
    if k.objective is None and abs(s.start - LN2) <= 0.05 * LN2:
        return LN2, "log 2 = 0.693, the loss of a policy that prefers neither response"
    return s.start, f"its first value {s.start:.3g}"


def detect_not_learning(s: Series, k: Knobs) -> Finding | None:
    """The last third of the loss sits where a model that learnt nothing would be, and the
    trend never dipped well below it; not where the rows swing around that level (which
    wants a lower learning rate, not the higher one advised here)."""
    if s.swinging:
        return None  # a mean held by swings: oscillating's business, with the opposite advice
    ref, what = _reference(s, k)
    tail = s.loss[-max(3, s.n // 3):]
    end = float(np.median(tail))
    tolerance = max(FLAT_REL * abs(ref), 2 * s.noise / math.sqrt(len(tail)))
    if not (ref - tolerance <= end < ref + DIVERGE_REL * abs(ref)):
        return None
    if float(np.min(s.trend)) < ref - 3 * tolerance:
        return None  # it did learn, then lost it: diverging's business
    _, margin = s.metric("margin")
    margin_note = ""
    if len(margin) >= MIN_ROWS:
        margin_end = float(np.median(margin[-len(margin) // 3:]))
        if margin_end - float(np.median(margin[:3])) > max(MARGIN_GROWTH, 3 * row_noise(margin)):
            return None  # the rewards tell chosen from rejected better and better: learning
        margin_note = f"; the reward margin stayed at {margin_end:.2g}"
    evidence = (f"loss stayed at {end:.3g} over steps {s.steps[0]:.0f}-{s.steps[-1]:.0f}, "
                f"within {100 * tolerance / abs(ref):.0f}% of {what}{margin_note}")
    advice = _given(k.learning_rate(2.0, "raise the learning rate"), k.raise_beta(),
                    k.check_data(k.data_doubt()))
    return Finding("not_learning", "warning", evidence, advice,
                   (int(s.steps[0]), int(s.steps[-1])))


def detect_plateaued(s: Series, k: Knobs) -> Finding | None:
    """The loss fell at first, then stayed flat over the last 60% of the rows (a Theil-Sen
    line there falls less than 15% of the early drop, give or take its standard error) at a
    poor level: a healthy run flattens too, but lower, where most pairs are told apart. Not
    where the rows swing around that level (oscillating: a lower learning rate, not higher)."""
    if s.swinging:
        return None
    first_late = int(s.n * (1 - PLATEAU_SPAN))
    x_late, y_late = s.steps[first_late:], s.loss[first_late:]
    slope, intercept = theil_sen(x_late, y_late)
    ref, _ = _reference(s, k)
    start = ref  # DPO starts at log 2, however far the first logged rows had already come
    early_drop = start - (slope * x_late[0] + intercept)
    late_drop = -slope * (x_late[-1] - x_late[0])
    if early_drop < max(0.05 * abs(start), 3 * s.noise):
        return None  # barely fell at all: not_learning's business
    # the change a line fitted to pure noise shows across the span (one standard error): too
    # large, and the rows cannot tell a plateau from a slow decline, so none is claimed
    wobble = s.noise * math.sqrt(12 / len(x_late))
    if wobble > PLATEAU_LATE * early_drop:
        return None
    if late_drop > PLATEAU_LATE * early_drop + wobble:
        return None  # still falling
    if late_drop < -(PLATEAU_LATE * early_drop + 3 * wobble):
        return None  # rising: diverging's business
    tail = max(3, s.n // 5)
    end = float(np.median(s.loss[-tail:]))
    if end < PLATEAU_HIGH * abs(start):
        return None  # it came down a long way before flattening: healthy
    stalled = f"{100 * (start - end) / abs(start):.0f}% below its start"
    _, accuracy = s.metric("accuracy")
    if len(accuracy) >= tail:
        level = float(np.median(accuracy[-tail:]))
        if level >= PLATEAU_ACCURACY:
            return None  # most pairs are told apart already
        stalled += f", train accuracy {level:.2f}"
    flat = int(np.argmax(s.trend <= end + max(0.03 * abs(end), s.noise)))
    epoch = _epoch_at(s.rows, int(s.steps[flat]))
    when = f" (epoch {epoch:.2g})" if epoch is not None else ""
    evidence = (f"loss stopped improving around step {s.steps[flat]:.0f}{when} and stayed "
                f"near {end:.3g} through step {s.steps[-1]:.0f} ({start:.3g} at the start, "
                f"{stalled})")
    advice = _given(k.train_longer(), k.learning_rate(1.5, "raise the learning rate slightly"),
                    k.raise_beta())
    return Finding("plateaued", "warning", evidence, advice,
                   (int(s.steps[flat]), int(s.steps[-1])))


def detect_unexpected_start(s: Series, k: Knobs) -> Finding | None:
    """The first logged loss lies far from the loss the algorithm table gives for the first
    step, when the policy still equals the reference (``_start_gap``: 10% above, 50% below,
    and beyond the noise). Above, the loss has no reason to be unless the reference is not the
    model training starts from, the loss ran with other settings than config.json says, or it
    rose within the first logging window; below by half, the first window learnt a great deal
    or the reference is off. Not looked for where the start depends on the data (SimPO, ORPO,
    SFT) or the config names no algorithm."""
    gap = _start_gap(s, k)
    if gap is None or not gap.far:
        return None
    expected, first, objective = gap.expected, gap.first, gap.objective
    step = int(s.raw_steps[0])
    window = f" (a mean over steps 1-{step})" if step > 1 else ""
    inputs = objective.start_inputs()
    given = f" with {', '.join(inputs)}" if inputs else ""
    side = "above" if first > expected else "below"
    why = ", while the policy equals the reference" if objective.needs_reference else ""
    evidence = (f"the first logged loss {first:.3g} at step {step}{window} is "
                f"{abs(first - expected):.2g} {side} {expected:.3g}, where {objective.label}"
                f"{given} starts (its loss before the first update{why})")
    settings = (f"check that the loss ran with {', '.join(inputs)}: the start {expected:.3g} "
                "follows from it" if inputs else None)
    advice = _given(k.check_reference(expected), settings,
                    k.log_every_step() if step > 1 else None,
                    k.learning_rate(0.5, "if it rose within the first steps, lower the "
                                    "learning rate") if side == "above" and step > 1 else None)
    return Finding("unexpected_start", "warning", evidence, advice, (step, step))


def _train_at(s: Series, name: str, step: float) -> float | None:
    """The median of a train metric over the three rows nearest ``step``."""
    steps, values = s.metric(name)
    if len(values) < 3:
        return None
    nearest = np.argsort(np.abs(steps - step))[:3]
    return float(np.median(values[nearest]))


def detect_overfitting(s: Series, k: Knobs) -> Finding | None:
    """Eval accuracy fell from its best (or eval loss rose from its lowest) and stayed there,
    while the same train metric kept improving. Eval values are smoothed over 3 evaluations
    first, so one lucky evaluation is not taken for the best."""
    for name, sign in (("accuracy", -1.0), ("loss", 1.0)):
        steps, values = s.eval_metric(f"eval/{name}")
        if len(values) < 3:
            continue
        smooth = rolling_median(values, 3)
        best = int(np.argmin(sign * smooth))
        # ``sign`` turns each change into "how much worse": accuracy falls, loss rises
        worse = sign * (smooth[-1] - smooth[best])
        limit = max(OVERFIT_ACCURACY if name == "accuracy" else OVERFIT_LOSS * abs(smooth[best]),
                    3 * row_noise(values))
        last_two = sign * (values[-2:] - smooth[best])
        if best > len(values) - 3 or worse < limit or last_two.min() < limit / 2:
            continue  # the best is among the last two evaluations, or barely above the end
        train_then, train_now = _train_at(s, name, steps[best]), _train_at(s, name, steps[-1])
        if train_then is None or train_now is None:
            continue
        gain = -sign * (train_now - train_then)
        if gain < (0.01 if name == "accuracy" else 0.02 * abs(train_then)):
            continue
        best_step = int(steps[best])
        epoch = _epoch_at(s.evals, best_step) or 0.0
        evidence = (f"eval {name} went from {smooth[best]:.3g} at step {best_step} to "
                    f"{smooth[-1]:.3g} at step {steps[-1]:.0f} while train {name} went from "
                    f"{train_then:.3g} to {train_now:.3g}")
        advice = _given(k.fewer_epochs(epoch, best_step), k.lower_beta(),
                        f"{k.more_data()}; meanwhile use the checkpoint nearest step "
                        f"{best_step}")
        return Finding("overfitting", "warning", evidence, advice,
                       (best_step, int(steps[-1])))
    return None


def _epoch_at(rows: list[Mapping[str, Any]], step: int) -> float | None:
    return next((_number(r, "epoch") for i, r in enumerate(rows) if _step(r, i) == step), None)


def detect_rewards_falling(s: Series, k: Knobs) -> Finding | None:
    """Chosen and rejected rewards both ended well below where they started (not looked for
    where the loss has no beta-scaled reward: SFT's rewards are its log-probs)."""
    if not k.reads("beta"):
        return None
    ends: dict[str, tuple[float, float]] = {}
    for name in ("chosen_reward", "rejected_reward", "margin"):
        _, values = s.metric(name)
        if len(values) < MIN_ROWS:
            return None
        edge = max(3, len(values) // 8)
        first, last = float(np.median(values[:edge])), float(np.median(values[-edge:]))
        if name != "margin" and first - last < max(0.05, 3 * row_noise(values)):
            return None
        ends[name] = (first, last)
    (c0, c1), (r0, r1), (m0, m1) = ends["chosen_reward"], ends["rejected_reward"], ends["margin"]
    evidence = (f"chosen reward fell from {c0:.2g} to {c1:.2g} and rejected reward from "
                f"{r0:.2g} to {r1:.2g}, while the margin went from {m0:.2g} to {m1:.2g}")
    this = "" if k.objective is None or k.objective.names == ("dpo",) else \
        f" and its kin ({k.objective.label} here)"
    advice = _given(f"this is common in DPO{this}: the log-probabilities of both responses "
                    "drop while the gap between them (the margin) grows; it matters only if "
                    "generations get worse", k.sft_term())
    return Finding("rewards_falling", "info", evidence, advice,
                   (int(s.steps[0]), int(s.steps[-1])))


def _drift(s: Series, name: str) -> tuple[list[float], tuple[int, int]] | None:
    """Quarter medians of a train metric after the first 10% of rows (start-up is slower and
    allocates), and the step range they span; None when too few rows logged it."""
    steps, values = s.metric(name, skip=max(1, s.n_rows // 10))
    if len(values) < MIN_ROWS:
        return None
    return quarter_medians(values), (int(steps[0]), int(steps[-1]))


def detect_memory_growing(s: Series, k: Knobs) -> Finding | None:
    """Peak memory rose in every quarter of the run, and by 8% or more in all."""
    drift = _drift(s, "peak_memory_mb")
    if drift is None:
        return None
    q, (a, b) = drift
    if not (all(q[i + 1] >= q[i] * (1 + MEMORY_STEP) for i in range(3))
            and q[3] >= q[0] * (1 + MEMORY_TOTAL)):
        return None
    rate = (q[3] - q[0]) / max(b - a, 1) * 4 / 3  # quarter centres are 3/4 of the span apart
    evidence = (f"peak memory grew {100 * (q[3] / q[0] - 1):.0f}% over steps {a}-{b} "
                f"({q[0]:,.0f} -> {q[3]:,.0f} MB), rising in every quarter")
    advice = [f"a steady rise across steps {a}-{b} (about {rate:.2g} MB per step) is likely a "
              "leak: look for tensors kept between steps (metrics summed without .item() or "
              ".detach(), a cache that keeps growing)",
              k.save_checkpoints(b)]
    return Finding("memory_growing", "warning", evidence, advice, (a, b))


def detect_throughput_falling(s: Series, k: Knobs) -> Finding | None:
    """Tokens per second fell in every quarter of the run, and by 15% or more in all."""
    drift = _drift(s, "tokens_per_second")
    if drift is None:
        return None
    q, (a, b) = drift
    if not (all(q[i + 1] <= q[i] * (1 - THROUGHPUT_STEP) for i in range(3))
            and q[3] <= q[0] * (1 - THROUGHPUT_TOTAL)):
        return None
    memory = _drift(s, "peak_memory_mb")
    also = (f": peak memory went from {memory[0][0]:,.0f} to {memory[0][3]:,.0f} MB over the same "
            "steps" if memory is not None else "")
    evidence = (f"throughput fell {100 * (1 - q[3] / q[0]):.0f}% over steps {a}-{b} "
                f"({q[0]:,.0f} -> {q[3]:,.0f} tokens/s), falling in every quarter")
    advice = [f"the slowdown spans steps {a}-{b}; a steady one is likely memory pressure "
              f"(allocator fragmentation, swapping){also}",
              k.smaller_batches(),
              "check that nothing else runs on the device and that it is not throttling"]
    return Finding("throughput_falling", "warning", evidence, advice, (a, b))


INSTANT: list[Detector] = [detect_nan]  # judged from one row: no minimum length
TRENDS: list[Detector] = [detect_diverging, detect_oscillating, detect_not_learning,
                          detect_plateaued, detect_overfitting, detect_unexpected_start,
                          detect_memory_growing, detect_throughput_falling,
                          detect_rewards_falling]
DETECTORS: list[Detector] = INSTANT + TRENDS  # priority order: of equal severity, earlier wins
LIVE: list[Detector] = [detect_nan, detect_diverging, detect_oscillating]


# ------------------------------------------------------------------------------ entry points


def diagnose(rows: Sequence[Mapping[str, float]],
             config: Mapping[str, Any] | None = None) -> Diagnosis:
    """Diagnose a run from its metrics rows (train and ``eval/`` rows, in order) and its
    resolved config (advice then quotes its values; without it the advice is generic).

    Runs of fewer than ``MIN_ROWS`` train rows are too short to judge a trend: only a
    non-finite value, which needs no trend, is reported for them.
    """
    s, knobs = Series.of(rows), Knobs(config)
    detectors = DETECTORS if s.n >= MIN_ROWS else INSTANT
    found = [f for f in (detect(s, knobs) for detect in detectors) if f is not None]
    findings, alarm = ranked(found)
    if alarm is not None:
        return alarm
    if s.n < MIN_ROWS:
        span = f"{s.steps[-1]:.0f} steps" if s.n else f"{len(s.rows)} logged rows"
        return Diagnosis("healthy", f"too short to judge a trend ({span}; it takes about "
                         f"{MIN_ROWS * BLOCK_STEPS} logged steps)", findings)
    return Diagnosis("healthy", _healthy_summary(s, findings), findings)


def ranked(found: list[Finding]) -> tuple[list[Finding], Diagnosis | None]:
    """The findings, most severe first (ties keep the detectors' order), and the diagnosis
    they make when any is more than information: its condition is the verdict (None: no
    alarm, the run is healthy)."""
    findings = sorted(found, key=lambda f: -SEVERITIES.index(f.severity))  # stable
    alarms = [f for f in findings if f.severity != "info"]
    if not alarms:
        return findings, None
    top = alarms[0]
    others = ", ".join(dict.fromkeys(f.condition for f in findings[1:]))
    summary = f"{top.condition}: {top.evidence}" + (f" (also: {others})" if others else "")
    return findings, Diagnosis(top.condition, summary, findings)


def _healthy_summary(s: Series, notes: list[Finding]) -> str:
    end = float(np.median(s.loss[-3:]))
    text = (f"healthy: loss from {s.start:.3g} to {end:.3g} over steps {s.steps[0]:.0f}-"
            f"{s.steps[-1]:.0f}")
    _, accuracy = s.eval_metric("eval/accuracy")
    if len(accuracy):
        text += f", eval accuracy {accuracy[-1]:.3g}"
    text += "; no change needed"
    if notes:
        text += "; note: " + ", ".join(f.condition for f in notes)
    return text


def diagnose_run(run_dir: Path, write: bool = True) -> Diagnosis:
    """Diagnose the run in ``run_dir`` from metrics.jsonl and config.json; with ``write``,
    save the result to ``run_dir/diagnosis.json`` (atomically)."""
    run = RunDir(Path(run_dir))
    if not run.metrics_path.is_file():
        what = "no such directory" if not run.path.is_dir() else "it has no metrics.jsonl"
        raise UsageError(f"cannot diagnose {run.path}: {what}",
                         ["pass a run directory written by `preftune train` (it holds "
                          "config.json and metrics.jsonl)"])
    diagnosis = diagnose(run.metrics(), run_config(run))
    if write:
        write_json(run.path / DIAGNOSIS, diagnosis.to_dict())
    return diagnosis


def run_config(run: RunDir) -> dict[str, Any] | None:
    """The resolved TrainConfig from config.json; None when the run has none."""
    if not run.config_path.is_file():
        return None
    try:
        record = json.loads(run.config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read {run.config_path}: {e}",
                         ["the advice quotes the run's config; restore config.json, or move "
                          "it away to get generic advice"]) from e
    config = record.get("config") if isinstance(record, dict) else None
    return config if isinstance(config, dict) else None


class LiveMonitor:
    """Fed each train row during training; returns a Finding the first time divergence, NaN/inf
    or oscillation becomes evident (each condition reported once), else None.

    It judges the first ``HEAD`` rows (where the loss started sets the scale) and the last
    ``window``, so its cost per row stays bounded on long runs.
    """

    HEAD = 32

    def __init__(self, config: Mapping[str, Any] | None = None, window: int = 512) -> None:
        self.knobs = Knobs(config)
        self.head: list[Mapping[str, Any]] = []
        self.tail: deque[Mapping[str, Any]] = deque(maxlen=window)
        self.reported: set[str] = set()

    def update(self, row: Mapping[str, float]) -> Finding | None:
        if _number(row, "loss") is None:
            return None  # an eval row
        if len(self.head) < self.HEAD:
            self.head.append(row)
        else:
            self.tail.append(row)
        s = Series.of(self.head + list(self.tail))
        for detect in LIVE:
            if detect not in INSTANT and s.n < MIN_ROWS:
                continue
            finding = detect(s, self.knobs)
            if finding is not None and finding.condition not in self.reported:
                self.reported.add(finding.condition)
                return finding
        return None
