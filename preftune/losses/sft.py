"""Supervised fine-tuning on the chosen responses, and the NLL term other losses can add."""

from __future__ import annotations

from torch import Tensor

from preftune.losses.types import LossOutput, LossParams, PairLogps


def chosen_nll(logps: PairLogps) -> Tensor:
    """Per-token mean negative log-likelihood of each chosen response, (B,)."""
    chosen_avg, _ = logps.per_token(logps.policy_chosen, logps.policy_rejected)
    return -chosen_avg


def add_sft_term(losses: Tensor, logps: PairLogps, params: LossParams) -> Tensor:
    """``losses + sft_weight * chosen_nll``: the NLL term of RPO's DPO+NLL loss (Pang et al. 2024).

    Pang et al. divide the NLL by the length of prompt plus response; this divides by the
    response length only, the same per-token mean as `sft`. It matches TRL's
    ``loss_type=[<loss>, "sft"]`` with ``loss_weights=[1, sft_weight]`` per pair (TRL averages
    the NLL over all chosen tokens of the batch instead).
    """
    if params.sft_weight == 0:
        return losses
    return losses + params.sft_weight * chosen_nll(logps)


def sft(logps: PairLogps, params: LossParams) -> LossOutput:
    """Negative log-likelihood of the chosen response, per-token mean: ``-policy_chosen / len``.

    Needs no reference and ignores every field of `params`. TRL's DPOTrainer
    ``loss_type="sft"`` averages over all chosen tokens of the batch; this averages per pair,
    which equals TRL's value when every pair is its own batch. The rewards are the average
    log-probs of chosen and rejected (TRL logs beta-scaled reference log-ratios), so reward
    accuracy says whether the model already prefers the chosen response.
    """
    chosen_avg, rejected_avg = logps.per_token(logps.policy_chosen, logps.policy_rejected)
    return LossOutput(-chosen_avg, chosen_avg.detach(), rejected_avg.detach())
