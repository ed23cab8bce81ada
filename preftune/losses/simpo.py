"""SimPO: a reference-free margin loss on length-normalised log-probs."""

from __future__ import annotations

import torch.nn.functional as F

from preftune.losses.sft import add_sft_term
from preftune.losses.types import LossOutput, LossParams, PairLogps


def simpo(logps: PairLogps, params: LossParams) -> LossOutput:
    """SimPO (Meng et al. 2024, Eq. 6), with TRL CPOTrainer's label smoothing.

    ``z = beta * (pc/len_c - pr/len_r - gamma_beta_ratio)``, i.e. the paper's margin
    ``gamma = gamma_beta_ratio * beta``; the loss is
    ``-(1 - eps) log sigmoid(z) - eps log sigmoid(-z)`` with eps = label_smoothing (eps = 0 is
    the paper's loss). Rewards are beta times the average log-probs. Adds ``sft_weight`` times
    the chosen NLL.

    TRL (CPOTrainer, ``loss_type="simpo"``) takes the margin itself, ``simpo_gamma = gamma``,
    and subtracts ``simpo_gamma / beta``: set ``simpo_gamma = gamma_beta_ratio * beta`` and
    ``cpo_alpha = 0`` (``cpo_alpha > 0`` is TRL's CPO-SimPO NLL term, our ``sft_weight``).
    """
    chosen_avg, rejected_avg = logps.per_token(logps.policy_chosen, logps.policy_rejected)
    logits = params.beta * (chosen_avg - rejected_avg - params.gamma_beta_ratio)  # (B,)
    eps = params.label_smoothing
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return LossOutput(
        add_sft_term(losses, logps, params),
        (params.beta * chosen_avg).detach(),
        (params.beta * rejected_avg).detach(),
    )
