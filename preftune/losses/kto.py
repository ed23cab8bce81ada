"""Losses on unpaired data: each example is one completion labelled desirable or not (kto,
apo_zero_unpaired).

`PairLogps` carries such a batch as follows: ``labels`` (B,) is True where the example is
desirable, the chosen fields hold the example's completion and the rejected fields a
*mismatched* completion, another example's completion scored under this example's prompt, from
which KTO estimates its KL term. Both losses are per example, (B,), weighted by
desirable_weight or undesirable_weight; their mean is TRL's KTOTrainer loss.

Rewards: ``chosen_rewards`` is ``beta * log-ratio`` of each example's completion, and
``rejected_rewards`` the baseline it is judged against, ``beta * KL`` (0 for
apo_zero_unpaired), the same for every example. Accuracy (``correct``) is KTO's: a desirable
example whose log-ratio lies above the baseline, an undesirable one whose lies below it.
sft_weight and WPO weighting do not apply.
"""

from __future__ import annotations

import torch
from torch import Tensor

from preftune.losses.ratios import log_ratios
from preftune.losses.types import LossOutput, LossParams, PairLogps


def _labels(logps: PairLogps, loss_name: str) -> Tensor:
    """The desirable mask, (B,) bool; ValueError naming `loss_name` when there is none."""
    if logps.labels is None:
        raise ValueError(f"loss {loss_name!r} trains on unpaired data, but labels is None; "
                         "give each example's label (True: desirable) in PairLogps.labels")
    return logps.labels.bool()


def _unpaired_output(desirable_losses: Tensor, undesirable_losses: Tensor, logratio: Tensor,
                     baseline: Tensor, labels: Tensor, params: LossParams) -> LossOutput:
    """Per-example losses by label and weight; rewards, KTO accuracy and the ``kl`` metric."""
    losses = torch.where(labels, params.desirable_weight * desirable_losses,
                         params.undesirable_weight * undesirable_losses)
    correct = torch.where(labels, logratio > baseline, logratio < baseline).detach()
    baseline_B = baseline.expand_as(logratio).detach()
    return LossOutput(losses, (params.beta * logratio).detach(), params.beta * baseline_B,
                      correct, {"kl": baseline_B})


def kto(logps: PairLogps, params: LossParams) -> LossOutput:
    """KTO (Ethayarajh et al. 2024, KTO: Model Alignment as Prospect Theoretic Optimization,
    Eq. 7), as TRL's KTOTrainer ``loss_type="kto"`` computes it.

    ``KL = max(0, mean over the batch of (pr - rr))``, the mismatched completions' log-ratios,
    detached: the reference point z0. With ``r = pc - rc``, a desirable example's loss is
    ``desirable_weight * (1 - sigmoid(beta (r - KL)))`` and an undesirable one's
    ``undesirable_weight * (1 - sigmoid(beta (KL - r)))``. The KL estimate is a batch mean, so
    the batch needs more than one example for it to differ from the example's own log-ratio.

    Start (policy = reference): every log-ratio and KL are 0, so each example's loss is 0.5
    times its class weight, and the mean depends on the batch's class mix unless the two
    weights are equal. The table's start value is therefore ``0.5 * weight`` when
    desirable_weight = undesirable_weight and None otherwise, never a guess at the mix.
    """
    labels = _labels(logps, "kto")
    logratio, mismatched = log_ratios(logps, "kto")  # (B,) each
    kl = mismatched.mean().clamp(min=0).detach()
    desirable = 1 - torch.sigmoid(params.beta * (logratio - kl))
    undesirable = 1 - torch.sigmoid(params.beta * (kl - logratio))
    return _unpaired_output(desirable, undesirable, logratio, kl, labels, params)


def apo_zero_unpaired(logps: PairLogps, params: LossParams) -> LossOutput:
    """APO-zero on unpaired data (D'Oosterlinck et al. 2024, Eq. 7 with the two terms on
    separate examples), as TRL's KTOTrainer ``loss_type="apo_zero_unpaired"``.

    A desirable example's loss is ``desirable_weight * (1 - sigmoid(beta r))``, an undesirable
    one's ``undesirable_weight * sigmoid(beta r)``, ``r = pc - rc``: KTO with the reference
    itself as the reference point (KL = 0), so the mismatched completions are not read (their
    fields must still be filled). Start: as `kto`'s, ``0.5 * weight`` when the weights are
    equal, else None.
    """
    labels = _labels(logps, "apo_zero_unpaired")
    logratio, _ = log_ratios(logps, "apo_zero_unpaired")  # (B,)
    reward = params.beta * logratio
    zero = torch.zeros((), dtype=logratio.dtype, device=logratio.device)
    return _unpaired_output(1 - torch.sigmoid(reward), torch.sigmoid(reward), logratio, zero,
                            labels, params)
