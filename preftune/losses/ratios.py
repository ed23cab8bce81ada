"""Policy-over-reference log-ratios: taking them, scoring them under an f-divergence, and
reporting them as beta-scaled implicit rewards."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from preftune.losses.sft import add_sft_term
from preftune.losses.types import LossOutput, LossParams, PairLogps


def log_ratios(logps: PairLogps, loss_name: str) -> tuple[Tensor, Tensor]:
    """Policy-over-reference log-ratios of chosen and rejected, (B,) each.

    The reference is detached: it is a constant of the objective even when the caller computed
    it with gradients on. Raises ValueError naming `loss_name` when a reference is missing.
    """
    if logps.ref_chosen is None or logps.ref_rejected is None:
        raise ValueError(
            f"loss {loss_name!r} needs reference log-probs, but ref_chosen or ref_rejected is "
            "None; compute them with the reference model, or pick a reference-free loss "
            "(simpo, orpo, sft)"
        )
    return (
        logps.policy_chosen - logps.ref_chosen.detach(),
        logps.policy_rejected - logps.ref_rejected.detach(),
    )


# The alpha-divergence's exponent is clamped by dtype so that exp() stays finite once cast back
# (float16 overflows past e^11): TRL's bounds, so that both clamp alike; TRL has none for
# float64, where this allows e^700.
_ALPHA_EXP_MAX = {torch.float16: 11.0, torch.bfloat16: 80.0, torch.float32: 80.0,
                  torch.float64: 700.0}


def f_score(logratio: Tensor, params: LossParams) -> Tensor:
    """``f'(u)`` at ``u = pi / pi_ref``, (B,): the implicit reward of f-DPO under
    ``params.f_divergence`` (Wang et al. 2023, Beyond Reverse KL, arXiv:2309.16240).

    reverse_kl: ``log u`` (DPO's reward); forward_kl: ``1 - 1/u``; js_divergence:
    ``log(2u / (1 + u)) = log 2 + log sigmoid(log u)``; alpha_divergence:
    ``(u^(a-1) - 1) / (a - 1)`` with ``a = f_alpha``, TRL's parameterisation, whose limits are
    forward_kl (a -> 0) and reverse_kl (a -> 1, taken as reverse_kl within 1e-6). Every score is
    0 at u = 1, so policy = reference gives a zero margin under any divergence.

    The score replaces the log-ratio only in a margin ``score(chosen) - score(rejected)``, where
    the partition function cancels; losses of each log-ratio on its own take it raw, as TRL.
    """
    kind = params.f_divergence
    if kind == "reverse_kl":
        return logratio
    if kind == "forward_kl":
        return 1 - torch.exp(-logratio)
    if kind == "js_divergence":
        return math.log(2) + F.logsigmoid(logratio)
    alpha = params.f_alpha
    if abs(alpha - 1) < 1e-6:
        return logratio
    exponent = (alpha - 1) * logratio  # (B,)
    wide = exponent.to(torch.promote_types(exponent.dtype, torch.float32))
    grown = torch.exp(wide.clamp(max=_ALPHA_EXP_MAX[exponent.dtype])) - 1
    return grown.to(exponent.dtype) / (alpha - 1)


def reward_output(losses: Tensor, chosen_logratios: Tensor, rejected_logratios: Tensor,
                  logps: PairLogps, params: LossParams) -> LossOutput:
    """`losses` plus the sft_weight term, with rewards ``beta * log-ratio`` (detached)."""
    return LossOutput(
        add_sft_term(losses, logps, params),
        (params.beta * chosen_logratios).detach(),
        (params.beta * rejected_logratios).detach(),
    )
