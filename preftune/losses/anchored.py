"""Anchored losses: each response's own log-ratio is pushed towards a fixed target, not only
the chosen-minus-rejected margin (nca_pair, bco_pair, sppo_hard, apo_zero, apo_down).

The DPO margin leaves both log-ratios free to fall together; these losses also say where each
should go, relative to 0 (the reference) or to +-1/(2 beta). They take the raw log-ratios,
so f_divergence does not apply (as in TRL, where a score would leave the partition function
in). Rewards are the beta-scaled log-ratios, ``r_c = beta (pc - rc)`` and
``r_r = beta (pr - rr)``; each loss adds ``sft_weight`` times the chosen NLL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from preftune.losses.ratios import log_ratios, reward_output
from preftune.losses.types import LossOutput, LossParams, PairLogps


def nca_pair(logps: PairLogps, params: LossParams) -> LossOutput:
    """NCA for pairs (Chen et al. 2024, Noise Contrastive Alignment of Language Models with
    Explicit Rewards), with the preference as a hard label:
    ``-log sigmoid(r_c) - 1/2 log sigmoid(-r_c) - 1/2 log sigmoid(-r_r)``.

    The first term raises the chosen reward above 0, the reference; the other two hold both
    rewards down, so that the likelihood of the chosen response can rise instead of only the
    margin. Matches TRL's DPOTrainer ``loss_type="nca_pair"``.
    """
    chosen, rejected = log_ratios(logps, "nca_pair")
    chosen_reward, rejected_reward = params.beta * chosen, params.beta * rejected  # (B,)
    losses = (-F.logsigmoid(chosen_reward) - 0.5 * F.logsigmoid(-chosen_reward)
              - 0.5 * F.logsigmoid(-rejected_reward))
    return reward_output(losses, chosen, rejected, logps, params)


def bco_pair(logps: PairLogps, params: LossParams) -> LossOutput:
    """BCO on pairs (Jung et al. 2024, Binary Classifier Optimization for Large Language Model
    Alignment): a logistic classifier with the reward as its logit, chosen as class 1 and
    rejected as class 0: ``-log sigmoid(r_c) - log sigmoid(-r_r)``.

    The paper shifts both rewards by a running mean delta; TRL's DPOTrainer
    ``loss_type="bco_pair"``, matched here, does not (delta = 0).
    """
    chosen, rejected = log_ratios(logps, "bco_pair")
    losses = -F.logsigmoid(params.beta * chosen) - F.logsigmoid(-params.beta * rejected)
    return reward_output(losses, chosen, rejected, logps, params)


def sppo_hard(logps: PairLogps, params: LossParams) -> LossOutput:
    """SPPO with hard win probabilities (Wu et al. 2024, Self-Play Preference Optimization for
    Language Model Alignment, Eq. 4.7 of Algorithm 1):
    ``(log-ratio_c - 1/(2 beta))**2 + (log-ratio_r + 1/(2 beta))**2``.

    SPPO regresses each log-ratio onto ``eta (P(y wins) - 1/2)``; with P = 1 for the chosen and
    0 for the rejected response, as TRL's DPOTrainer ``loss_type="sppo_hard"`` takes it, and
    ``eta = 1/beta``, the targets are +-1/(2 beta). Matches TRL; the paper estimates P with a
    preference model instead.
    """
    chosen, rejected = log_ratios(logps, "sppo_hard")
    target = 0.5 / params.beta
    losses = (chosen - target) ** 2 + (rejected + target) ** 2
    return reward_output(losses, chosen, rejected, logps, params)


def apo_zero(logps: PairLogps, params: LossParams) -> LossOutput:
    """APO-zero (D'Oosterlinck et al. 2024, Anchored Preference Optimization and Contrastive
    Revisions, Eq. 7): ``(1 - sigmoid(r_c)) + sigmoid(r_r)``.

    Raises the chosen likelihood and lowers the rejected one, each against the reference: for
    chosen responses better than the model's own. Matches TRL's DPOTrainer
    ``loss_type="apo_zero"``.
    """
    chosen, rejected = log_ratios(logps, "apo_zero")
    losses = 1 - torch.sigmoid(params.beta * chosen) + torch.sigmoid(params.beta * rejected)
    return reward_output(losses, chosen, rejected, logps, params)


def apo_down(logps: PairLogps, params: LossParams) -> LossOutput:
    """APO-down (D'Oosterlinck et al. 2024, Eq. 8): ``sigmoid(r_c) + (1 - sigmoid(r_c - r_r))``.

    Lowers the chosen likelihood and the rejected one further, for chosen responses worse than
    the model's own. Matches TRL's DPOTrainer ``loss_type="apo_down"``.
    """
    chosen, rejected = log_ratios(logps, "apo_down")
    chosen_reward, rejected_reward = params.beta * chosen, params.beta * rejected  # (B,)
    losses = torch.sigmoid(chosen_reward) + 1 - torch.sigmoid(chosen_reward - rejected_reward)
    return reward_output(losses, chosen, rejected, logps, params)
