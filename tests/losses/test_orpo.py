"""ORPO: hand-worked values, numerical limits, and parity with TRL's ORPOTrainer."""

import math
from collections.abc import Callable

import pytest
import torch
from torch.testing import assert_close
from trl.experimental.orpo import ORPOTrainer

from preftune.losses import PairLogps
from preftune.losses.orpo import orpo
from preftune.losses.types import LossParams


def test_orpo_by_hand():
    """Chosen: 2 tokens of probability 0.5 (pc = 2 log 0.5); rejected: 3 tokens of 0.2.

    Average log-probs log 0.5 and log 0.2: odds 0.5/0.5 = 1 and 0.2/0.8 = 0.25, so the log
    odds ratio is log(1 / 0.25) = log 4 and log sigmoid(log 4) = log(4/5) = -0.223144.
    NLL = -log 0.5 = 0.693147. beta = 0.1: loss = 0.693147 + 0.1 * 0.223144 = 0.715462.
    rewards = 0.1 * log 0.5 = -0.069315 and 0.1 * log 0.2 = -0.160944.
    """
    logps = PairLogps(torch.tensor([2 * math.log(0.5)], dtype=torch.float64),
                      torch.tensor([3 * math.log(0.2)], dtype=torch.float64),
                      torch.tensor([2]), torch.tensor([3]))
    out = orpo(logps, LossParams(beta=0.1))
    assert out.losses.item() == pytest.approx(0.715462, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(-0.069315, abs=1e-6)
    assert out.rejected_rewards.item() == pytest.approx(-0.160944, abs=1e-6)


def test_sft_weight_does_not_apply():
    logps = PairLogps(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([2]),
                      torch.tensor([2]))
    plain = orpo(logps, LossParams(beta=0.1)).losses
    assert orpo(logps, LossParams(beta=0.1, sft_weight=3.0)).losses.item() == plain.item()


def test_log_odds_stay_finite_and_accurate_near_certainty():
    """An average log-prob of -1e-7 has log odds log(1 - 1e-7) - log(1e-7) ~ 16.118096;
    ``log1p(-exp(x))`` alone would round 1 - exp(-1e-7) badly in float32.

    Chosen at -1e-7, rejected at log 0.5 (log odds 0): loss = 1e-7 - 0.5 log sigmoid(16.118)
    = 1e-7 + 0.5 * 1e-7 = 1.5e-7.
    """
    logps = PairLogps(torch.tensor([-1e-7]), torch.tensor([math.log(0.5)]), torch.tensor([1]),
                      torch.tensor([1]))
    policy_chosen = logps.policy_chosen.requires_grad_(True)
    out = orpo(logps, LossParams(beta=0.5))
    out.losses.sum().backward()
    assert out.losses.item() == pytest.approx(1.5e-7, rel=1e-3)
    assert policy_chosen.grad is not None and torch.isfinite(policy_chosen.grad).all()


def test_gradients_reach_the_policy(token_batch):
    batch = token_batch().logps
    policy_chosen = batch.policy_chosen.clone().requires_grad_(True)
    policy_rejected = batch.policy_rejected.clone().requires_grad_(True)
    logps = PairLogps(policy_chosen, policy_rejected, batch.chosen_tokens, batch.rejected_tokens)
    orpo(logps, LossParams(beta=0.1)).losses.mean().backward()
    for grad in (policy_chosen.grad, policy_rejected.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


# ------------------------------------------------------------------- parity with TRL 1.16
# TRL's odds_ratio_loss casts the log-probs to float32, so these run in float32 to 1e-5.


def orpo_trainer(trl_trainer: Callable[..., ORPOTrainer], beta: float) -> ORPOTrainer:
    return trl_trainer(ORPOTrainer, beta=beta, is_encoder_decoder=False, padding_value=0,
                       aux_loss_enabled=False)


def test_odds_ratio_term_matches_trl_per_pair(token_batch, logits_model, trl_trainer):
    """TRL's ``ORPOTrainer.concatenated_forward`` on a stand-in model's logits (it averages the
    token log-probs), then its ``odds_ratio_loss``, which returns beta * log sigmoid(log odds
    ratio) per pair; our loss minus our per-pair NLL must be minus that."""
    batch = token_batch(dtype=torch.float32)
    trainer = orpo_trainer(trl_trainer, beta=0.1)
    chosen_avg, rejected_avg = trainer.concatenated_forward(
        logits_model(batch), batch.preference_inputs())[:2]
    odds_terms, chosen_rewards, rejected_rewards, _, _ = trainer.odds_ratio_loss(
        chosen_avg, rejected_avg)
    out = orpo(batch.logps, LossParams(beta=0.1))
    assert_close(out.losses - (-chosen_avg), -odds_terms, rtol=1e-5, atol=1e-5)
    assert_close(out.chosen_rewards, chosen_rewards, rtol=1e-5, atol=1e-5)
    assert_close(out.rejected_rewards, rejected_rewards, rtol=1e-5, atol=1e-5)


def test_batch_loss_matches_trl_where_its_nll_is_ours(token_batch, logits_model, trl_trainer):
    """TRL's whole ``ORPOTrainer.get_batch_loss_metrics``: NLL - mean(odds term).

    TRL's NLL averages over every non-padding chosen token after the first, prompt included.
    With one-token prompts (never predicted) and chosen responses all of one length, that is
    the mean of our per-pair response NLLs, so the batch losses must agree.
    """
    batch = token_batch(dtype=torch.float32, chosen_tokens=5, prompt_tokens=1)
    trainer = orpo_trainer(trl_trainer, beta=0.1)
    loss, metrics = trainer.get_batch_loss_metrics(logits_model(batch), batch.preference_inputs())
    out = orpo(batch.logps, LossParams(beta=0.1))
    assert_close(out.losses.mean(), loss, rtol=1e-5, atol=1e-5)
    assert metrics["rewards/chosen"] == pytest.approx(out.chosen_rewards.mean().item(), abs=1e-5)
