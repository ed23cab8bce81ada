"""The algorithm table: one entry per training objective, read by everything that names one.

An entry says which loss function computes it, whether it needs a reference model, which data it
trains on (``paired``: prompt, chosen, rejected; ``unpaired``: prompt, completion, label), which
hyperparameters it reads, the values it recommends where they differ from DPO's, the loss at the
first step (policy = reference), a one-line description and its paper. Config validation, the
CLI's help, the dry run, diagnosis, the service's ``method.type`` list, the model card and
``docs/algorithms.md`` all read it; adding an algorithm is an entry here and a function in one
loss module (``tests/losses/test_table.py`` holds the two together).

A *mixture* is several entries trained at once, each loss times its weight, summed per pair
(TRL's ``loss_type`` list with ``loss_weights``, e.g. MPO's ``["sigmoid", "bco_pair", "sft"]``
with ``[0.8, 0.2, 1.0]``): `mixture_loss` builds it, `start_loss` of a mixture is the weighted
sum of its parts'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor

from preftune.losses.dpo import cdpo, dpo, hinge, ipo, robust
from preftune.losses.orpo import orpo
from preftune.losses.sft import sft
from preftune.losses.simpo import simpo
from preftune.losses.types import LossFn, LossOutput, LossParams, PairLogps

LN2 = math.log(2)

DataKind = Literal["paired", "unpaired"]


@dataclass(frozen=True)
class Hyperparameter:
    """A loss hyperparameter: its default, its valid range (None: unbounded) and what it does."""

    name: str
    default: Any
    low: float | None = None
    high: float | None = None
    description: str = ""
    choices: tuple[str, ...] = ()


HYPERPARAMETERS: dict[str, Hyperparameter] = {h.name: h for h in (
    Hyperparameter("beta", 0.1, 0.0, None, "strength of the preference: the inverse "
                   "temperature of the implicit reward (DPO's beta, IPO's tau, ORPO's lambda)"),
    Hyperparameter("label_smoothing", 0.0, 0.0, 0.5, "the probability that a label is flipped"),
    Hyperparameter("gamma_beta_ratio", 0.5, 0.0, None, "SimPO's target margin over beta"),
    Hyperparameter("sft_weight", 0.0, 0.0, None, "weight of an NLL term on the chosen "
                   "response added to the loss"),
    Hyperparameter("f_divergence", "reverse_kl", description="the divergence from the "
                   "reference that the implicit reward regularises (f-DPO, Wang et al. 2023)",
                   choices=("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")),
    Hyperparameter("f_alpha", 0.5, 0.0, None, "alpha of f_divergence=alpha_divergence"),
    Hyperparameter("discopop_tau", 0.05, 0.0, None, "temperature of DiscoPOP's blend of the "
                   "logistic and exponential losses"),
    Hyperparameter("desirable_weight", 1.0, 0.0, None, "KTO: weight of desirable examples"),
    Hyperparameter("undesirable_weight", 1.0, 0.0, None, "KTO: weight of undesirable "
                   "examples"),
    Hyperparameter("use_weighting", False, description="WPO (Zhou et al. 2024): weight each "
                   "pair's loss by how likely the policy finds its two responses"),
    Hyperparameter("ld_alpha", None, 0.0, 1.0, "LD-DPO (Liu et al. 2024): weight of the "
                   "response tokens past the shorter response's length (1: plain DPO)"),
)}


@dataclass(frozen=True)
class Algorithm:
    """One training objective. ``start`` gives the loss when policy = reference, or None where
    it depends on the data (SimPO, ORPO, SFT)."""

    name: str
    loss: LossFn
    needs_reference: bool
    data: DataKind
    hyperparameters: tuple[str, ...]
    start: Callable[[LossParams], float | None]
    description: str
    paper: str
    defaults: dict[str, Any] = field(default_factory=dict)  # where it differs from DPO's
    trl_name: str | None = None  # TRL 1.x's loss_type (or trainer) for the same loss
    aliases: tuple[str, ...] = ()


def _constant(value: float) -> Callable[[LossParams], float | None]:
    return lambda _params: value


def _unknown(_params: LossParams) -> float | None:
    return None


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("dpo", dpo, True, "paired", ("beta", "sft_weight", "f_divergence", "f_alpha"),
              _constant(LN2), "sigmoid loss on the margin of policy-over-reference log-ratios",
              "Rafailov et al. 2023, Direct Preference Optimization (arXiv:2305.18290)",
              trl_name="sigmoid", aliases=("sigmoid",)),
    Algorithm("ipo", ipo, True, "paired", ("beta", "sft_weight", "f_divergence", "f_alpha"),
              lambda p: 1 / (4 * p.beta ** 2),
              "squared distance of the per-token log-ratio margin from 1/(2 beta)",
              "Azar et al. 2023, A General Theoretical Paradigm to Understand Learning from "
              "Human Preferences (arXiv:2310.12036)", trl_name="ipo"),
    Algorithm("cdpo", cdpo, True, "paired", ("beta", "label_smoothing", "sft_weight"),
              _constant(LN2), "DPO against labels flipped with probability label_smoothing",
              "Mitchell 2023, A note on DPO with noisy preferences",
              defaults={"label_smoothing": 0.1}),
    Algorithm("robust", robust, True, "paired",
              ("beta", "label_smoothing", "sft_weight", "f_divergence", "f_alpha"),
              _constant(LN2), "unbiased DPO under labels flipped with probability "
              "label_smoothing", "Chowdhury et al. 2024, Provably Robust DPO "
              "(arXiv:2403.00409)", defaults={"label_smoothing": 0.1}, trl_name="robust"),
    Algorithm("hinge", hinge, True, "paired", ("beta", "sft_weight", "f_divergence", "f_alpha"),
              _constant(1.0), "hinge on the log-ratio margin, margin 1/beta",
              "Liu et al. 2023, Statistical Rejection Sampling Improves Preference "
              "Optimization (arXiv:2309.06657)", trl_name="hinge"),
    Algorithm("simpo", simpo, False, "paired",
              ("beta", "gamma_beta_ratio", "label_smoothing", "sft_weight"), _unknown,
              "reference-free sigmoid loss on length-normalised log-probs with a target margin",
              "Meng et al. 2024, SimPO: Simple Preference Optimization with a Reference-Free "
              "Reward (arXiv:2405.14734)",
              defaults={"beta": 2.0, "gamma_beta_ratio": 0.5, "learning_rate": 1e-6},
              trl_name="simpo (CPOTrainer)"),
    Algorithm("orpo", orpo, False, "paired", ("beta",), _unknown,
              "NLL of the chosen response plus an odds-ratio preference term, no reference",
              "Hong et al. 2024, ORPO: Monolithic Preference Optimization without Reference "
              "Model (arXiv:2403.07691)", trl_name="ORPOTrainer"),
    Algorithm("sft", sft, False, "paired", (), _unknown,
              "supervised fine-tuning: the NLL of the chosen response",
              "Ouyang et al. 2022, Training language models to follow instructions with human "
              "feedback (arXiv:2203.02155)", trl_name="sft"),
)}


def resolve(name: str) -> str:
    """The table's name for ``name`` (TRL's and other tools' names are aliases); KeyError
    when no entry has it."""
    key = name.strip().lower()
    if key in ALGORITHMS:
        return key
    for algorithm in ALGORITHMS.values():
        if key in algorithm.aliases:
            return algorithm.name
    raise KeyError(name)


def needs_reference(names: Sequence[str]) -> bool:
    return any(ALGORITHMS[n].needs_reference for n in names)


def data_kind(names: Sequence[str]) -> DataKind:
    """The data the algorithms train on; ValueError when a mixture mixes kinds."""
    kinds = {ALGORITHMS[n].data for n in names}
    if len(kinds) > 1:
        raise ValueError(f"{' + '.join(names)} mixes paired and unpaired algorithms; a mixture "
                         "trains on one kind of data")
    return kinds.pop()


def hyperparameters(names: Sequence[str]) -> tuple[str, ...]:
    """The hyperparameters the algorithms read, in table order."""
    used = {h for n in names for h in ALGORITHMS[n].hyperparameters}
    return tuple(h for h in HYPERPARAMETERS if h in used)


def start_loss(names: Sequence[str], params: LossParams,
               weights: Sequence[float] | None = None) -> float | None:
    """The loss at the first step, when policy = reference: the weighted sum of the parts';
    None where any part depends on the data, or WPO weighting scales it."""
    if params.use_weighting:
        return None
    total = 0.0
    for name, weight in zip(names, weights or [1.0] * len(names), strict=True):
        value = ALGORITHMS[name].start(params)
        if value is None:
            return None
        total += weight * value
    return total


def mixture_loss(names: Sequence[str], weights: Sequence[float] | None = None) -> LossFn:
    """The loss of ``names`` trained together: each part's per-pair loss times its weight,
    summed; rewards and accuracy from the first part; ``loss/<name>`` metrics per part."""
    if len(names) == 1 and not weights:
        return ALGORITHMS[names[0]].loss
    factors = list(weights) if weights is not None else [1.0] * len(names)
    if len(factors) != len(names):
        raise ValueError(f"{len(factors)} loss weights for {len(names)} algorithms")
    parts = [(name, ALGORITHMS[name].loss, w) for name, w in zip(names, factors, strict=True)]

    def loss(logps: PairLogps, params: LossParams) -> LossOutput:
        outputs = [(name, fn(logps, params), w) for name, fn, w in parts]
        total: Tensor = sum(w * out.losses for _, out, w in outputs)  # type: ignore[assignment]
        first = outputs[0][1]
        metrics = {f"loss/{name}": out.losses.detach() for name, out, _ in outputs}
        for _, out, _ in outputs:
            metrics.update({k: v for k, v in out.metrics.items() if k not in metrics})
        return LossOutput(total, first.chosen_rewards, first.rejected_rewards, first.correct,
                          metrics)

    return loss


def describe(names: Sequence[str], weights: Sequence[float] | None = None) -> str:
    """``dpo`` or ``0.8 dpo + 0.2 bco_pair + 1 sft``."""
    if len(names) == 1 and not weights:
        return names[0]
    factors = weights or [1.0] * len(names)
    return " + ".join(f"{w:g} {n}" for n, w in zip(names, factors, strict=True))
