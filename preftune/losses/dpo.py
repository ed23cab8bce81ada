"""The DPO family: losses of the policy-over-reference log-ratios (dpo, cdpo, robust, hinge, ipo).

Each takes the margin ``l = (pc - rc) - (pr - rr)`` between the chosen and rejected log-ratios
and returns beta-scaled log-ratios as rewards. Each adds ``sft_weight`` times the chosen NLL
(see `preftune.losses.sft.add_sft_term`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from preftune.losses.sft import add_sft_term
from preftune.losses.types import LossOutput, LossParams, PairLogps


def _log_ratios(logps: PairLogps, loss_name: str) -> tuple[Tensor, Tensor]:
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


def _output(
    losses: Tensor, chosen_rewards: Tensor, rejected_rewards: Tensor, logps: PairLogps,
    params: LossParams,
) -> LossOutput:
    return LossOutput(
        add_sft_term(losses, logps, params),
        chosen_rewards.detach(),
        rejected_rewards.detach(),
    )


def dpo(logps: PairLogps, params: LossParams) -> LossOutput:
    """Sigmoid DPO (Rafailov et al. 2023, Eq. 7): ``-log sigmoid(beta * l)``.

    Matches TRL's DPOTrainer ``loss_type="sigmoid"``.
    """
    chosen, rejected = _log_ratios(logps, "dpo")
    losses = -F.logsigmoid(params.beta * (chosen - rejected))
    return _output(losses, params.beta * chosen, params.beta * rejected, logps, params)


def cdpo(logps: PairLogps, params: LossParams) -> LossOutput:
    """Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences").

    ``-(1 - eps) log sigmoid(beta l) - eps log sigmoid(-beta l)`` with eps = label_smoothing:
    DPO's cross-entropy against a label that is flipped with probability eps. TRL 1.16's
    DPOTrainer no longer has it (its sigmoid loss ignores label_smoothing); CPOTrainer's
    ``loss_type="sigmoid"`` keeps the form.
    """
    chosen, rejected = _log_ratios(logps, "cdpo")
    logits = params.beta * (chosen - rejected)  # (B,)
    eps = params.label_smoothing
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return _output(losses, params.beta * chosen, params.beta * rejected, logps, params)


def robust(logps: PairLogps, params: LossParams) -> LossOutput:
    """Robust DPO, rDPO (Chowdhury et al. 2024), eps = label_smoothing, the flip rate.

    ``(-(1 - eps) log sigmoid(beta l) + eps log sigmoid(-beta l)) / (1 - 2 eps)``, an unbiased
    estimate of the clean DPO loss under labels flipped with probability eps. Matches TRL's
    DPOTrainer ``loss_type="robust"``.
    """
    chosen, rejected = _log_ratios(logps, "robust")
    logits = params.beta * (chosen - rejected)  # (B,)
    eps = params.label_smoothing
    losses = (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)
    return _output(losses, params.beta * chosen, params.beta * rejected, logps, params)


def hinge(logps: PairLogps, params: LossParams) -> LossOutput:
    """Hinge loss ``relu(1 - beta l)``, after SLiC-HF's calibration loss (Zhao et al. 2023).

    SLiC-HF puts the hinge on the policy's own log-probs, with margin delta and no reference;
    this is TRL's variant (DPOTrainer ``loss_type="hinge"``, the normalised-likelihood hinge of
    Liu et al. 2023, RSO): the hinge on the reference log-ratios, with margin 1/beta, scaled by
    beta.
    """
    chosen, rejected = _log_ratios(logps, "hinge")
    losses = torch.relu(1 - params.beta * (chosen - rejected))
    return _output(losses, params.beta * chosen, params.beta * rejected, logps, params)


def ipo(logps: PairLogps, params: LossParams) -> LossOutput:
    """IPO (Azar et al. 2023, Eq. 17) on per-token log-ratios: ``(h - 1/(2 beta))**2``.

    As TRL's DPOTrainer ``loss_type="ipo"`` does, and unlike the paper's formula, each log-ratio
    is divided by its response length first: ``h = (pc - rc)/len_c - (pr - rr)/len_r``, so beta
    (the paper's tau) does not depend on response length. The rewards are beta times these
    per-token log-ratios, the quantity IPO pulls apart (TRL logs the unnormalised ones).
    """
    chosen, rejected = logps.per_token(*_log_ratios(logps, "ipo"))
    losses = (chosen - rejected - 1 / (2 * params.beta)) ** 2
    return _output(losses, params.beta * chosen, params.beta * rejected, logps, params)
