"""AOT: preference alignment by optimal transport between sorted batches (aot, aot_unpaired).

Melnyk et al. 2024, Distributional Preference Alignment of LLMs via Optimal Transport
(arXiv:2406.05882): the policy's reward distribution should dominate the reference's (or the
rejected rewards') in the first order, which in one dimension is a comparison of quantiles; the
quantiles of a batch are its sorted values. So ``losses[i]`` belongs to the i-th quantile of the
batch, not to pair i: only the mean over the batch means anything, and it changes with the batch
(a larger batch gives finer quantiles). The per-quantile loss is cDPO's,
``-(1 - eps) log sigmoid(beta d) - eps log sigmoid(-beta d)``, eps = label_smoothing.

Rewards are the per-pair beta-scaled log-ratios, as TRL logs them; each loss adds
``sft_weight`` times the chosen NLL (per pair, to the quantile at the same index: the mean is
what counts). WPO weighting does not apply (a quantile has no pair to weigh it by), and the raw
log-ratios are compared, so f_divergence does not either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from preftune.losses.ratios import log_ratios, reward_output
from preftune.losses.types import LossOutput, LossParams, PairLogps


def _smoothed_logistic(distance: Tensor, params: LossParams) -> Tensor:
    logits = params.beta * distance  # (B,)
    eps = params.label_smoothing
    return -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)


def aot(logps: PairLogps, params: LossParams) -> LossOutput:
    """AOT, paired: ``d = sort(pc - pr) - sort(rc - rr)``, the policy's log-prob margins
    against the reference's, quantile by quantile. Matches TRL's DPOTrainer ``loss_type="aot"``
    (batch means; per quantile too)."""
    chosen, rejected = log_ratios(logps, "aot")
    assert logps.ref_chosen is not None and logps.ref_rejected is not None  # log_ratios checked
    policy_margins, _ = torch.sort(logps.policy_chosen - logps.policy_rejected)  # (B,)
    ref_margins, _ = torch.sort((logps.ref_chosen - logps.ref_rejected).detach())
    losses = _smoothed_logistic(policy_margins - ref_margins, params)
    return reward_output(losses, chosen, rejected, logps, params)


def aot_unpaired(logps: PairLogps, params: LossParams) -> LossOutput:
    """AOT, unpaired: ``d = sort(pc - rc) - sort(pr - rr)``, the chosen log-ratios against the
    rejected ones, quantile by quantile, as if chosen and rejected were drawn apart. Matches
    TRL's DPOTrainer ``loss_type="aot_unpaired"`` (batch means; per quantile too)."""
    chosen, rejected = log_ratios(logps, "aot_unpaired")
    chosen_sorted, _ = torch.sort(chosen)  # (B,)
    rejected_sorted, _ = torch.sort(rejected)
    losses = _smoothed_logistic(chosen_sorted - rejected_sorted, params)
    return reward_output(losses, chosen, rejected, logps, params)
