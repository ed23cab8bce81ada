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

from preftune.losses.anchored import apo_down, apo_zero, bco_pair, nca_pair, sppo_hard
from preftune.losses.aot import aot, aot_unpaired
from preftune.losses.dpo import cdpo, discopop, dpo, exo_pair, hinge, ipo, robust, sigmoid_norm
from preftune.losses.kto import apo_zero_unpaired, kto
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
    """One training objective.

    ``start`` gives the loss of the preference term when policy = reference (the mean over the
    batch, every log-ratio 0), or None where that depends on the data (SimPO, ORPO, SFT; KTO
    with unequal class weights). `start_loss` adds what depends on the data everywhere: an
    sft_weight term and WPO weighting. ``hyperparameters`` lists what the loss reads; WPO's
    use_weighting is listed where it applies.
    """

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


def _exo_start(params: LossParams) -> float | None:
    """EXO at z = 0: ``-log 2 - (log(1 - eps) + log eps) / 2``; eps = 0 is not allowed."""
    eps = params.label_smoothing
    return -LN2 - 0.5 * (math.log1p(-eps) + math.log(eps)) if eps > 0 else None


def _unpaired_start(params: LossParams) -> float | None:
    """Half a class weight per example: known only when both classes weigh the same."""
    if params.desirable_weight != params.undesirable_weight:
        return None
    return 0.5 * params.desirable_weight


# The hyperparameters of the losses of a score margin (robust, exo_pair and discopop read one
# more), of the anchored losses, of AOT's sorted margins and of the unpaired losses.
_MARGIN = ("beta", "sft_weight", "f_divergence", "f_alpha", "use_weighting")
_ANCHORED = ("beta", "sft_weight", "use_weighting")
_SORTED = ("beta", "label_smoothing", "sft_weight")
_UNPAIRED = ("beta", "desirable_weight", "undesirable_weight")

_APO = ("D'Oosterlinck et al. 2024, Anchored Preference Optimization and Contrastive "
       "Revisions: Addressing Underspecification in Alignment (arXiv:2408.06266)")
_AOT = ("Melnyk et al. 2024, Distributional Preference Alignment of LLMs via Optimal Transport "
       "(arXiv:2406.05882)")
_KTO = ("Ethayarajh et al. 2024, KTO: Model Alignment as Prospect Theoretic Optimization "
       "(arXiv:2402.01306)")

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("dpo", dpo, True, "paired", _MARGIN, _constant(LN2),
              "sigmoid loss on the margin of policy-over-reference log-ratios",
              "Rafailov et al. 2023, Direct Preference Optimization (arXiv:2305.18290)",
              trl_name="sigmoid", aliases=("sigmoid",)),
    Algorithm("ipo", ipo, True, "paired", _MARGIN, lambda p: 1 / (4 * p.beta ** 2),
              "squared distance of the per-token log-ratio margin from 1/(2 beta)",
              "Azar et al. 2023, A General Theoretical Paradigm to Understand Learning from "
              "Human Preferences (arXiv:2310.12036)", trl_name="ipo"),
    Algorithm("cdpo", cdpo, True, "paired",
              ("beta", "label_smoothing", "sft_weight", "use_weighting"), _constant(LN2),
              "DPO against labels flipped with probability label_smoothing",
              "Mitchell 2023, A note on DPO with noisy preferences",
              defaults={"label_smoothing": 0.1}),
    Algorithm("robust", robust, True, "paired", ("beta", "label_smoothing", *_MARGIN[1:]),
              _constant(LN2), "unbiased DPO under labels flipped with probability "
              "label_smoothing", "Chowdhury et al. 2024, Provably Robust DPO "
              "(arXiv:2403.00409)", defaults={"label_smoothing": 0.1}, trl_name="robust"),
    Algorithm("hinge", hinge, True, "paired", _MARGIN, _constant(1.0),
              "hinge on the log-ratio margin, margin 1/beta",
              "Liu et al. 2023, Statistical Rejection Sampling Improves Preference "
              "Optimization (arXiv:2309.06657)", trl_name="hinge"),
    Algorithm("sigmoid_norm", sigmoid_norm, True, "paired", _MARGIN, _constant(LN2),
              "DPO on per-token log-ratios: the margin cannot grow with length alone",
              "Meng et al. 2024, SimPO (arXiv:2405.14734), its length normalisation; Lambert "
              "et al. 2024, Tulu 3 (arXiv:2411.15124)", trl_name="sigmoid_norm"),
    Algorithm("exo_pair", exo_pair, True, "paired",
              ("beta", "label_smoothing", *_MARGIN[1:]), _exo_start,
              "reverse KL from the policy's preference to the label, smoothed by "
              "label_smoothing (> 0)", "Ji et al. 2024, Towards Efficient Exact Optimization "
              "of Language Model Alignment (arXiv:2402.00856)",
              defaults={"label_smoothing": 1e-3}, trl_name="exo_pair"),
    Algorithm("discopop", discopop, True, "paired",
              ("beta", "discopop_tau", *_MARGIN[1:]), _constant((1 + LN2) / 2),
              "DPO's logistic loss blended into an exponential one as the margin grows",
              "Lu et al. 2024, Discovering Preference Optimization Algorithms with and for "
              "Large Language Models (arXiv:2406.08414)", trl_name="discopop"),
    Algorithm("nca_pair", nca_pair, True, "paired", _ANCHORED, _constant(2 * LN2),
              "chosen reward above the reference, both rewards held down: the chosen "
              "likelihood can rise", "Chen et al. 2024, Noise Contrastive Alignment of "
              "Language Models with Explicit Rewards (arXiv:2402.05369)", trl_name="nca_pair"),
    Algorithm("bco_pair", bco_pair, True, "paired", _ANCHORED, _constant(2 * LN2),
              "a logistic classifier of chosen (1) against rejected (0), the reward its logit",
              "Jung et al. 2024, Binary Classifier Optimization for Large Language Model "
              "Alignment (arXiv:2404.04656)", trl_name="bco_pair"),
    Algorithm("sppo_hard", sppo_hard, True, "paired", _ANCHORED,
              lambda p: 1 / (2 * p.beta ** 2),
              "log-ratios regressed onto +1/(2 beta) (chosen) and -1/(2 beta) (rejected)",
              "Wu et al. 2024, Self-Play Preference Optimization for Language Model Alignment "
              "(arXiv:2405.00675)", trl_name="sppo_hard"),
    Algorithm("apo_zero", apo_zero, True, "paired", _ANCHORED, _constant(1.0),
              "chosen likelihood up and rejected down, each against the reference", _APO,
              trl_name="apo_zero"),
    Algorithm("apo_down", apo_down, True, "paired", _ANCHORED, _constant(1.0),
              "chosen likelihood down, rejected further down: chosen worse than the model's "
              "own", _APO, trl_name="apo_down"),
    Algorithm("aot", aot, True, "paired", _SORTED, _constant(LN2),
              "the batch's sorted log-prob margins dominate the reference's, quantile by "
              "quantile", _AOT, trl_name="aot"),
    Algorithm("aot_unpaired", aot_unpaired, True, "paired", _SORTED, _constant(LN2),
              "the batch's sorted chosen log-ratios dominate its sorted rejected ones", _AOT,
              trl_name="aot_unpaired"),
    Algorithm("kto", kto, True, "unpaired", _UNPAIRED, _unpaired_start,
              "each labelled completion's log-ratio above (desirable) or below (undesirable) "
              "the batch's KL estimate", _KTO, trl_name="kto (KTOTrainer)"),
    Algorithm("apo_zero_unpaired", apo_zero_unpaired, True, "unpaired", _UNPAIRED,
              _unpaired_start, "APO-zero on labelled completions: desirable up, undesirable "
              "down, against the reference", _APO,
              trl_name="apo_zero_unpaired (KTOTrainer)"),
    Algorithm("simpo", simpo, False, "paired",
              ("beta", "gamma_beta_ratio", "label_smoothing", "sft_weight", "use_weighting"),
              _unknown,
              "reference-free sigmoid loss on length-normalised log-probs with a target margin",
              "Meng et al. 2024, SimPO: Simple Preference Optimization with a Reference-Free "
              "Reward (arXiv:2405.14734)",
              defaults={"beta": 2.0, "gamma_beta_ratio": 0.5, "learning_rate": 1e-6},
              trl_name="simpo (CPOTrainer)"),
    Algorithm("orpo", orpo, False, "paired", ("beta", "use_weighting"), _unknown,
              "NLL of the chosen response plus an odds-ratio preference term, no reference",
              "Hong et al. 2024, ORPO: Monolithic Preference Optimization without Reference "
              "Model (arXiv:2403.07691)", trl_name="ORPOTrainer"),
    Algorithm("sft", sft, False, "paired", ("use_weighting",), _unknown,
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
    None where any part depends on the data, including its sft_weight term, or WPO weighting
    scales it."""
    if params.use_weighting:
        return None
    total = 0.0
    for name, weight in zip(names, weights or [1.0] * len(names), strict=True):
        algorithm = ALGORITHMS[name]
        value = algorithm.start(params)
        if value is None or (params.sft_weight > 0 and "sft_weight" in algorithm.hyperparameters):
            return None
        total += weight * value
    return total


def mixture_loss(names: Sequence[str], weights: Sequence[float] | None = None) -> LossFn:
    """The loss of ``names`` trained together: each part's per-pair loss times its weight,
    summed, then times the pair's WPO weight when ``use_weighting`` is on; rewards and
    accuracy from the first part; ``loss/<name>`` metrics per part of a mixture.

    Every run's loss comes from here, one algorithm too, so that WPO applies to all. WPO (Zhou
    et al. 2024, WPO: Enhancing RLHF with Weighted Preference Optimization, arXiv:2406.11827,
    Eq. 2) weighs a pair by ``chosen_weight * rejected_weight``, each the sequence's
    ``exp(mean over its tokens of log p - log sum_v p_v^2)``, computed without gradients by
    the caller; TRL's DPOTrainer multiplies each loss type's per-pair loss by it, which is
    the same as weighting the sum. ValueError when the weights are missing, or a part has no
    pair to weigh (aot, aot_unpaired, unpaired data).
    """
    factors = list(weights) if weights is not None else [1.0] * len(names)
    if len(factors) != len(names):
        raise ValueError(f"{len(factors)} loss weights for {len(names)} algorithms")
    parts = [(name, ALGORITHMS[name].loss, w) for name, w in zip(names, factors, strict=True)]
    unweighable = [n for n in names if "use_weighting" not in ALGORITHMS[n].hyperparameters]

    def loss(logps: PairLogps, params: LossParams) -> LossOutput:
        outputs = [(name, fn(logps, params), w) for name, fn, w in parts]
        total: Tensor = sum(w * out.losses for _, out, w in outputs)  # type: ignore[assignment]
        first = outputs[0][1]
        metrics = {f"loss/{name}": out.losses.detach() for name, out, _ in outputs
                   if len(outputs) > 1}
        for _, out, _ in outputs:
            metrics.update({k: v for k, v in out.metrics.items() if k not in metrics})
        if params.use_weighting:
            pair_weight = _wpo_weight(logps, unweighable)  # (B,)
            total = total * pair_weight
            metrics["wpo_weight"] = pair_weight
        return LossOutput(total, first.chosen_rewards, first.rejected_rewards, first.correct,
                          metrics)

    return loss


def _wpo_weight(logps: PairLogps, unweighable: Sequence[str]) -> Tensor:
    """``chosen_weight * rejected_weight``, (B,), detached; ValueError saying what is wrong."""
    if unweighable:
        why = {n: "it trains on unpaired examples" if ALGORITHMS[n].data == "unpaired"
               else "its losses belong to sorted quantiles of the batch" for n in unweighable}
        raise ValueError("use_weighting (WPO) weighs each pair's loss, but "
                         + "; ".join(f"{n} has none: {reason}" for n, reason in why.items())
                         + "; turn use_weighting off")
    if logps.chosen_weight is None or logps.rejected_weight is None:
        raise ValueError("use_weighting is on, but chosen_weight or rejected_weight is None: "
                         "compute each sequence's WPO weight, exp(mean(log p - log sum p^2)) "
                         "over its tokens, into PairLogps, or turn use_weighting off")
    return (logps.chosen_weight * logps.rejected_weight).detach()


def describe(names: Sequence[str], weights: Sequence[float] | None = None) -> str:
    """``dpo`` or ``0.8 dpo + 0.2 bco_pair + 1 sft``."""
    if len(names) == 1 and not weights:
        return names[0]
    factors = weights or [1.0] * len(names)
    return " + ".join(f"{w:g} {n}" for n, w in zip(names, factors, strict=True))
