"""SimPO: hand-worked values, limits, and parity with TRL's CPOTrainer (loss_type="simpo")."""

import math
from collections.abc import Callable

import pytest
import torch
from torch.testing import assert_close
from trl.experimental.cpo import CPOTrainer

from preftune.losses import PairLogps
from preftune.losses.simpo import simpo
from preftune.losses.types import LossParams

EXAMPLE = PairLogps(
    policy_chosen=torch.tensor([-2.0], dtype=torch.float64),
    policy_rejected=torch.tensor([-6.0], dtype=torch.float64),
    chosen_tokens=torch.tensor([4]),
    rejected_tokens=torch.tensor([3]),
)


def test_simpo_by_hand():
    """pc=-2 over 4 tokens, pr=-6 over 3 tokens, beta=2, gamma/beta=0.5.

    Averages: -2/4 = -0.5 and -6/3 = -2; margin 1.5 - 0.5 = 1.0; beta * 1.0 = 2.
    loss = -log sigmoid(2) = log(1 + e^-2) = log(1.135335) = 0.126928.
    rewards = 2 * -0.5 = -1 and 2 * -2 = -4.
    """
    out = simpo(EXAMPLE, LossParams(beta=2.0, gamma_beta_ratio=0.5))
    assert out.losses.item() == pytest.approx(0.126928, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(-1.0, abs=1e-6)
    assert out.rejected_rewards.item() == pytest.approx(-4.0, abs=1e-6)


def test_simpo_with_label_smoothing_by_hand():
    """As `test_simpo_by_hand` with eps = 0.1: -log sigmoid(-2) = log(1 + e^2) = 2.126928.

    loss = 0.9 * 0.126928 + 0.1 * 2.126928 = 0.114235 + 0.212693 = 0.326928.
    """
    out = simpo(EXAMPLE, LossParams(beta=2.0, gamma_beta_ratio=0.5, label_smoothing=0.1))
    assert out.losses.item() == pytest.approx(0.326928, abs=1e-6)


def test_simpo_with_sft_weight_by_hand():
    """As `test_simpo_by_hand` with sft_weight = 1: NLL = 2/4 = 0.5; loss = 0.626928."""
    out = simpo(EXAMPLE, LossParams(beta=2.0, gamma_beta_ratio=0.5, sft_weight=1.0))
    assert out.losses.item() == pytest.approx(0.626928, abs=1e-6)


def test_margin_equal_to_the_target_gives_log_2():
    """Averages -1 and -1.5: margin 0.5 = gamma/beta, so the loss is -log sigmoid(0) = log 2."""
    logps = PairLogps(torch.tensor([-2.0]), torch.tensor([-3.0]), torch.tensor([2]),
                      torch.tensor([2]))
    out = simpo(logps, LossParams(beta=2.0, gamma_beta_ratio=0.5))
    assert out.losses.item() == pytest.approx(math.log(2), abs=1e-6)


def test_needs_no_reference_and_gradients_reach_the_policy(token_batch):
    batch = token_batch().logps
    policy_chosen = batch.policy_chosen.clone().requires_grad_(True)
    policy_rejected = batch.policy_rejected.clone().requires_grad_(True)
    logps = PairLogps(policy_chosen, policy_rejected, batch.chosen_tokens, batch.rejected_tokens)
    simpo(logps, LossParams(beta=2.0)).losses.mean().backward()
    for grad in (policy_chosen.grad, policy_rejected.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


# ------------------------------------------------------------------- parity with TRL 1.16


def cpo_trainer(trl_trainer: Callable[..., CPOTrainer], params: LossParams,
                cpo_alpha: float = 0.0) -> CPOTrainer:
    """CPOTrainer set up for SimPO: TRL subtracts simpo_gamma / beta, so gamma = ratio * beta."""
    return trl_trainer(CPOTrainer, loss_type="simpo", beta=params.beta,
                       simpo_gamma=params.gamma_beta_ratio * params.beta,
                       label_smoothing=params.label_smoothing, cpo_alpha=cpo_alpha, alpha=0.0,
                       is_encoder_decoder=False, pad_token_id=0, aux_loss_enabled=False)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_matches_trl_cpo_trainer_per_pair(label_smoothing, token_batch, logits_model,
                                          trl_trainer):
    """TRL's ``CPOTrainer.concatenated_forward`` (which length-normalises in its
    ``get_batch_logps``) on a stand-in model's logits, then its ``cpo_loss``; float64, B=16."""
    batch = token_batch()
    params = LossParams(beta=2.0, gamma_beta_ratio=0.5, label_smoothing=label_smoothing)
    trainer = cpo_trainer(trl_trainer, params)
    chosen_avg, rejected_avg = trainer.concatenated_forward(
        logits_model(batch), batch.preference_inputs())[:2]
    losses, chosen_rewards, rejected_rewards = trainer.cpo_loss(chosen_avg, rejected_avg)
    out = simpo(batch.logps, params)
    assert_close(out.losses, losses, rtol=1e-6, atol=1e-6)
    assert_close(out.chosen_rewards, chosen_rewards, rtol=1e-6, atol=1e-6)
    assert_close(out.rejected_rewards, rejected_rewards, rtol=1e-6, atol=1e-6)


def test_sft_weight_matches_trl_cpo_alpha(token_batch, logits_model, trl_trainer):
    """TRL's whole ``CPOTrainer.get_batch_loss_metrics`` with ``cpo_alpha = sft_weight``.

    TRL's NLL is the mean over every chosen token of the batch; with all chosen responses of
    the same length it equals the mean of our per-pair NLLs, so the batch losses must agree.
    """
    batch = token_batch(chosen_tokens=5)
    params = LossParams(beta=2.0, gamma_beta_ratio=0.5, sft_weight=0.7)
    trainer = cpo_trainer(trl_trainer, params, cpo_alpha=params.sft_weight)
    loss, metrics = trainer.get_batch_loss_metrics(logits_model(batch), batch.preference_inputs())
    out = simpo(batch.logps, params)
    assert_close(out.losses.mean(), loss, rtol=1e-6, atol=1e-6)
    assert metrics["rewards/accuracies"] == pytest.approx(
        (out.chosen_rewards > out.rejected_rewards).double().mean().item(), abs=1e-12)
