"""ORPO: supervised fine-tuning plus an odds-ratio preference term, no reference model."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from preftune.losses.sft import chosen_nll
from preftune.losses.types import LossOutput, LossParams, PairLogps


def _log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for x < 0, without cancellation (Maechler 2012).

    ``log1p(-exp(x))`` loses precision near 0 and ``log(-expm1(x))`` far below it, so switch
    at x = -log 2.
    """
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo(logps: PairLogps, params: LossParams) -> LossOutput:
    """ORPO (Hong et al. 2024, Eqs. 6-7), with beta as the paper's lambda.

    ``NLL(chosen) - beta * log sigmoid(log odds(chosen) - log odds(rejected))``, where
    ``log odds(y) = log p - log(1 - p)`` and ``log p`` is the average token log-prob of y, as
    the paper defines the odds. Rewards are beta times the average log-probs, as TRL's
    ORPOTrainer logs. `sft_weight` does not apply: the NLL term is already part of the loss.

    Deviations from TRL (``trl.experimental.orpo.ORPOTrainer``): TRL's NLL covers prompt and
    response tokens and is averaged over every chosen token of the batch; this NLL is the
    per-token mean over the chosen response, per pair, as the paper's L_SFT. TRL also casts
    the log-probs to float32 for the odds ratio; this computes in the input dtype.
    """
    chosen_avg, rejected_avg = logps.per_token(logps.policy_chosen, logps.policy_rejected)
    log_odds = (chosen_avg - rejected_avg) - (_log1mexp(chosen_avg) - _log1mexp(rejected_avg))
    losses = chosen_nll(logps) - params.beta * F.logsigmoid(log_odds)
    return LossOutput(
        losses, (params.beta * chosen_avg).detach(), (params.beta * rejected_avg).detach()
    )
