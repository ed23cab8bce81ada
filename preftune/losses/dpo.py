"""The DPO family: losses of the margin between the chosen and rejected implicit rewards.

The margin is ``delta = s(pc - rc) - s(pr - rr)``, where ``s`` is the f-divergence score of a
log-ratio (`preftune.losses.ratios.f_score`; the log-ratio itself under reverse_kl, DPO's), in
every loss here but cdpo, which TRL's DPOTrainer does not have. Rewards are the beta-scaled
log-ratios (per token for ipo), as TRL logs them. Each loss adds ``sft_weight`` times the chosen
NLL (see `preftune.losses.sft.add_sft_term`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from preftune.losses.ratios import f_score, log_ratios, reward_output
from preftune.losses.types import LossOutput, LossParams, PairLogps


def _scored(logps: PairLogps, params: LossParams, loss_name: str
            ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Log-ratios of chosen and rejected, then their f-divergence scores, (B,) each."""
    chosen, rejected = log_ratios(logps, loss_name)
    return chosen, rejected, f_score(chosen, params), f_score(rejected, params)


def dpo(logps: PairLogps, params: LossParams) -> LossOutput:
    """Sigmoid DPO (Rafailov et al. 2023, Eq. 7): ``-log sigmoid(beta * delta)``.

    Matches TRL's DPOTrainer ``loss_type="sigmoid"``.
    """
    chosen, rejected, chosen_score, rejected_score = _scored(logps, params, "dpo")
    losses = -F.logsigmoid(params.beta * (chosen_score - rejected_score))
    return reward_output(losses, chosen, rejected, logps, params)


def cdpo(logps: PairLogps, params: LossParams) -> LossOutput:
    """Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences").

    ``-(1 - eps) log sigmoid(beta l) - eps log sigmoid(-beta l)`` with eps = label_smoothing and
    ``l`` the log-ratio margin: DPO's cross-entropy against a label that is flipped with
    probability eps. TRL 1.16's DPOTrainer no longer has it (its sigmoid loss ignores
    label_smoothing); CPOTrainer's ``loss_type="sigmoid"`` keeps the form, without
    f-divergences, so f_divergence does not apply here.
    """
    chosen, rejected = log_ratios(logps, "cdpo")
    logits = params.beta * (chosen - rejected)  # (B,)
    eps = params.label_smoothing
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return reward_output(losses, chosen, rejected, logps, params)


def robust(logps: PairLogps, params: LossParams) -> LossOutput:
    """Robust DPO, rDPO (Chowdhury et al. 2024), eps = label_smoothing, the flip rate.

    ``(-(1 - eps) log sigmoid(beta delta) + eps log sigmoid(-beta delta)) / (1 - 2 eps)``, an
    unbiased estimate of the clean DPO loss under labels flipped with probability eps. Matches
    TRL's DPOTrainer ``loss_type="robust"``.
    """
    chosen, rejected, chosen_score, rejected_score = _scored(logps, params, "robust")
    logits = params.beta * (chosen_score - rejected_score)  # (B,)
    eps = params.label_smoothing
    losses = (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)
    return reward_output(losses, chosen, rejected, logps, params)


def hinge(logps: PairLogps, params: LossParams) -> LossOutput:
    """Hinge loss ``relu(1 - beta delta)``, after SLiC-HF's calibration loss (Zhao et al. 2023).

    SLiC-HF puts the hinge on the policy's own log-probs, with margin delta and no reference;
    this is TRL's variant (DPOTrainer ``loss_type="hinge"``, the normalised-likelihood hinge of
    Liu et al. 2023, RSO): the hinge on the reference log-ratios, with margin 1/beta,
    scaled by beta.
    """
    chosen, rejected, chosen_score, rejected_score = _scored(logps, params, "hinge")
    losses = torch.relu(1 - params.beta * (chosen_score - rejected_score))
    return reward_output(losses, chosen, rejected, logps, params)


def ipo(logps: PairLogps, params: LossParams) -> LossOutput:
    """IPO (Azar et al. 2023, Eq. 17) on per-token scores: ``(h - 1/(2 beta))**2``.

    As TRL's DPOTrainer ``loss_type="ipo"`` does, and unlike the paper's formula, each score is
    divided by its response length first: ``h = s(pc - rc)/len_c - s(pr - rr)/len_r``, so beta
    (the paper's tau) does not depend on response length. The rewards are beta times the
    per-token log-ratios, the quantity IPO pulls apart (TRL logs the unnormalised ones).
    """
    chosen, rejected, chosen_score, rejected_score = _scored(logps, params, "ipo")
    chosen_avg, rejected_avg = logps.per_token(chosen_score, rejected_score)
    losses = (chosen_avg - rejected_avg - 1 / (2 * params.beta)) ** 2
    return reward_output(losses, *logps.per_token(chosen, rejected), logps, params)


def sigmoid_norm(logps: PairLogps, params: LossParams) -> LossOutput:
    """Length-normalised DPO: ``-log sigmoid(beta h)``, h the per-token margin of `ipo`.

    SimPO's length normalisation (Meng et al. 2024) applied to DPO's reference log-ratios, the
    length-normalised DPO that Tulu 3 trains with (Lambert et al. 2024): a long response cannot
    buy a margin by length alone. Matches TRL's DPOTrainer
    ``loss_type="sigmoid_norm"``; the rewards are TRL's, beta times the summed log-ratios.
    """
    chosen, rejected, chosen_score, rejected_score = _scored(logps, params, "sigmoid_norm")
    chosen_avg, rejected_avg = logps.per_token(chosen_score, rejected_score)
    losses = -F.logsigmoid(params.beta * (chosen_avg - rejected_avg))
    return reward_output(losses, chosen, rejected, logps, params)


def exo_pair(logps: PairLogps, params: LossParams) -> LossOutput:
    """EXO for pairs (Ji et al. 2024, Towards Efficient Exact Optimization of Language Model
    Alignment, Eq. 16 with K = 2): ``KL(q || p)`` between two-point distributions on
    (chosen, rejected).

    ``q = (sigmoid(z), sigmoid(-z))`` with ``z = beta delta`` is the policy's, ``p = (1 - eps,
    eps)`` with eps = label_smoothing the data's, so the loss is
    ``sigmoid(z) (log sigmoid(z) - log(1 - eps)) + sigmoid(-z) (log sigmoid(-z) - log eps)``,
    0 where ``sigmoid(z) = 1 - eps``. eps must be > 0 (the paper uses 1e-3); ValueError
    otherwise. Matches TRL's DPOTrainer ``loss_type="exo_pair"``.
    """
    eps = params.label_smoothing
    if eps <= 0:
        raise ValueError("loss 'exo_pair' needs label_smoothing > 0, got 0 (its target "
                         "distribution takes log(label_smoothing)); the paper uses 1e-3")
    chosen, rejected, chosen_score, rejected_score = _scored(logps, params, "exo_pair")
    z = params.beta * (chosen_score - rejected_score)  # (B,)
    losses = (torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-eps))
              + torch.sigmoid(-z) * (F.logsigmoid(-z) - math.log(eps)))
    return reward_output(losses, chosen, rejected, logps, params)


def discopop(logps: PairLogps, params: LossParams) -> LossOutput:
    """DiscoPOP, the log-ratio modulated loss (Lu et al. 2024, Discovering Preference
    Optimization Algorithms with and for Large Language Models, Eq. 5).

    With ``z = beta delta`` and ``m = sigmoid(z / tau)``, tau = discopop_tau:
    ``loss = (1 - m) (-log sigmoid(z)) + m exp(-z)``, a blend of DPO's logistic loss and an
    exponential loss, weighted towards the latter as the margin grows. Matches TRL's DPOTrainer
    ``loss_type="discopop"``.
    """
    chosen, rejected, chosen_score, rejected_score = _scored(logps, params, "discopop")
    z = params.beta * (chosen_score - rejected_score)  # (B,)
    blend = torch.sigmoid(z / params.discopop_tau)
    losses = (1 - blend) * -F.logsigmoid(z) + blend * torch.exp(-z)
    return reward_output(losses, chosen, rejected, logps, params)
