"""The DPO family (dpo, cdpo, robust, hinge, ipo, sigmoid_norm, exo_pair, discopop): hand-worked
values, limits, TRL parity under every f-divergence."""

import dataclasses
import math

import pytest
import torch
from torch.testing import assert_close
from trl.experimental.cpo import CPOTrainer

from preftune.losses import PairLogps
from preftune.losses.dpo import cdpo, discopop, dpo, exo_pair, hinge, ipo, robust, sigmoid_norm
from preftune.losses.types import LossParams

EXAMPLE = PairLogps(
    policy_chosen=torch.tensor([-1.0], dtype=torch.float64),
    policy_rejected=torch.tensor([-2.0], dtype=torch.float64),
    chosen_tokens=torch.tensor([2]),
    rejected_tokens=torch.tensor([4]),
    ref_chosen=torch.tensor([-1.5], dtype=torch.float64),
    ref_rejected=torch.tensor([-1.5], dtype=torch.float64),
)


def pair(chosen_logratio: float, rejected_logratio: float, chosen_tokens: int = 1,
         rejected_tokens: int = 1) -> PairLogps:
    """One pair with the given log-ratios (reference log-probs are all -1)."""
    def t(value: float) -> torch.Tensor:
        return torch.tensor([value], dtype=torch.float64)
    return PairLogps(t(chosen_logratio - 1), t(rejected_logratio - 1),
                     torch.tensor([chosen_tokens]), torch.tensor([rejected_tokens]), t(-1), t(-1))


# ------------------------------------------------------------------------ worked by hand


def test_dpo_by_hand():
    """pc=-1, pr=-2, rc=rr=-1.5, beta=0.5.

    Log-ratios: chosen -1 - (-1.5) = 0.5, rejected -2 - (-1.5) = -0.5; l = 1, beta*l = 0.5.
    loss = -log sigmoid(0.5) = log(1 + e^-0.5) = log(1.606531) = 0.474077.
    rewards = 0.5 * 0.5 = 0.25 and 0.5 * -0.5 = -0.25.
    """
    out = dpo(EXAMPLE, LossParams(beta=0.5))
    assert out.losses.item() == pytest.approx(0.474077, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.25, abs=1e-6)
    assert out.rejected_rewards.item() == pytest.approx(-0.25, abs=1e-6)


def test_dpo_with_sft_weight_by_hand():
    """As `test_dpo_by_hand`, sft_weight=0.5, chosen has 2 tokens.

    NLL = -pc / 2 = 0.5; loss = 0.474077 + 0.5 * 0.5 = 0.724077. The rewards do not change.
    """
    out = dpo(EXAMPLE, LossParams(beta=0.5, sft_weight=0.5))
    assert out.losses.item() == pytest.approx(0.724077, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.25, abs=1e-6)


def test_cdpo_by_hand():
    """beta*l = 0.5 as in `test_dpo_by_hand`, eps = 0.1.

    -log sigmoid(0.5) = 0.474077 and -log sigmoid(-0.5) = log(1 + e^0.5) = 0.974077.
    loss = 0.9 * 0.474077 + 0.1 * 0.974077 = 0.426669 + 0.097408 = 0.524077.
    """
    out = cdpo(EXAMPLE, LossParams(beta=0.5, label_smoothing=0.1))
    assert out.losses.item() == pytest.approx(0.524077, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.25, abs=1e-6)


def test_robust_by_hand():
    """beta*l = 0.5, eps = 0.1.

    loss = (0.9 * 0.474077 - 0.1 * 0.974077) / (1 - 0.2) = (0.426669 - 0.097408) / 0.8
         = 0.329262 / 0.8 = 0.411577.
    """
    out = robust(EXAMPLE, LossParams(beta=0.5, label_smoothing=0.1))
    assert out.losses.item() == pytest.approx(0.411577, abs=1e-6)
    assert out.rejected_rewards.item() == pytest.approx(-0.25, abs=1e-6)


def test_hinge_by_hand():
    """beta*l = 0.5: loss = max(0, 1 - 0.5) = 0.5."""
    out = hinge(EXAMPLE, LossParams(beta=0.5))
    assert out.losses.item() == pytest.approx(0.5, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.25, abs=1e-6)


def test_ipo_by_hand():
    """Log-ratios 0.5 and -0.5 over 2 and 4 tokens, beta = 0.5.

    Per token: 0.5 / 2 = 0.25 and -0.5 / 4 = -0.125, so h = 0.375; 1/(2 beta) = 1.
    loss = (0.375 - 1)^2 = 0.390625. rewards = 0.5 * 0.25 = 0.125 and 0.5 * -0.125 = -0.0625.
    """
    out = ipo(EXAMPLE, LossParams(beta=0.5))
    assert out.losses.item() == pytest.approx(0.390625, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.125, abs=1e-6)
    assert out.rejected_rewards.item() == pytest.approx(-0.0625, abs=1e-6)


def test_sigmoid_norm_by_hand():
    """Log-ratios 0.5 over 2 tokens and -0.5 over 4, beta = 0.5.

    Per token 0.25 and -0.125: h = 0.375, beta h = 0.1875.
    loss = -log sigmoid(0.1875) = log(1 + e^-0.1875) = log(1.829029) = 0.603785.
    rewards, TRL's: beta times the summed log-ratios, 0.25 and -0.25.
    """
    out = sigmoid_norm(EXAMPLE, LossParams(beta=0.5))
    assert out.losses.item() == pytest.approx(0.603785, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.25, abs=1e-6)
    assert out.rejected_rewards.item() == pytest.approx(-0.25, abs=1e-6)


def test_exo_pair_by_hand():
    """z = beta l = 0.5 (as `test_dpo_by_hand`), eps = 0.1.

    sigmoid(0.5) = 0.622459, sigmoid(-0.5) = 0.377541; log sigmoid(0.5) = -0.474077,
    log sigmoid(-0.5) = -0.974077; log 0.9 = -0.105361, log 0.1 = -2.302585.
    loss = 0.622459 (-0.474077 + 0.105361) + 0.377541 (-0.974077 + 2.302585)
         = 0.622459 (-0.368716) + 0.377541 (1.328508) = -0.229510 + 0.501565 = 0.272055.
    """
    out = exo_pair(EXAMPLE, LossParams(beta=0.5, label_smoothing=0.1))
    assert out.losses.item() == pytest.approx(0.272055, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.25, abs=1e-6)


def test_discopop_by_hand():
    """z = 0.5, tau = 0.5: m = sigmoid(z / tau) = sigmoid(1) = 0.731059.

    logistic -log sigmoid(0.5) = 0.474077, exponential e^-0.5 = 0.606531.
    loss = 0.268941 * 0.474077 + 0.731059 * 0.606531 = 0.127499 + 0.443410 = 0.570908.
    """
    out = discopop(EXAMPLE, LossParams(beta=0.5, discopop_tau=0.5))
    assert out.losses.item() == pytest.approx(0.570908, abs=1e-6)
    assert out.rejected_rewards.item() == pytest.approx(-0.25, abs=1e-6)


# --------------------------------------------------------------------------- limit cases


def test_exo_pair_is_zero_where_the_policy_matches_the_smoothed_label():
    """sigmoid(z) = 1 - eps = 0.9 at z = log 9: l = log 9 with beta = 1."""
    out = exo_pair(pair(math.log(9), 0.0), LossParams(beta=1.0, label_smoothing=0.1))
    assert out.losses.item() == pytest.approx(0.0, abs=1e-12)


def test_exo_pair_without_label_smoothing_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'exo_pair' needs label_smoothing > 0"):
        exo_pair(EXAMPLE, LossParams(beta=0.5))


def test_discopop_is_logistic_for_small_tau_below_zero_and_exponential_above():
    """tau -> 0 makes m a step at z = 0: -log sigmoid(z) for z < 0, e^-z for z > 0."""
    params = LossParams(beta=1.0, discopop_tau=1e-4)
    assert discopop(pair(-0.5, 0.0), params).losses.item() == pytest.approx(
        math.log1p(math.exp(0.5)), abs=1e-9)
    assert discopop(pair(0.5, 0.0), params).losses.item() == pytest.approx(
        math.exp(-0.5), abs=1e-9)


def test_sigmoid_norm_equals_dpo_when_both_responses_have_one_token():
    logps = pair(0.7, -0.2)
    assert_close(sigmoid_norm(logps, LossParams(beta=0.3)).losses,
                 dpo(logps, LossParams(beta=0.3)).losses, rtol=0, atol=1e-12)


def test_equal_log_ratios_give_dpo_loss_log_2_and_no_reward_margin():
    out = dpo(pair(0.7, 0.7), LossParams(beta=0.3))
    assert out.losses.item() == pytest.approx(math.log(2), abs=1e-12)
    assert out.chosen_rewards.item() == out.rejected_rewards.item()


def test_hinge_is_one_at_equal_log_ratios_and_zero_once_beta_l_reaches_one():
    params = LossParams(beta=0.5)
    assert hinge(pair(0.3, 0.3), params).losses.item() == pytest.approx(1.0, abs=1e-12)
    assert hinge(pair(1.0, -1.0), params).losses.item() == 0.0  # beta*l = 1
    assert hinge(pair(2.0, -1.0), params).losses.item() == 0.0  # beta*l = 1.5


def test_ipo_minimum_is_at_l_equal_one_over_two_beta():
    """beta = 0.25: the target is l = 2 (one token each); l = 1.9 or 2.1 costs 0.1^2."""
    params = LossParams(beta=0.25)
    at_target = pair(1.5, -0.5)
    at_target.policy_chosen.requires_grad_(True)
    loss = ipo(at_target, params).losses
    loss.sum().backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert at_target.policy_chosen.grad is not None
    assert at_target.policy_chosen.grad.item() == pytest.approx(0.0, abs=1e-12)
    for off_target in (pair(1.4, -0.5), pair(1.6, -0.5)):
        assert ipo(off_target, params).losses.item() == pytest.approx(0.01, abs=1e-9)


@pytest.mark.parametrize("smoothed", [cdpo, robust])
def test_zero_label_smoothing_reduces_to_dpo(smoothed, token_batch):
    logps = token_batch().logps
    params = LossParams(beta=0.3, label_smoothing=0.0)
    expected = dpo(logps, params)
    out = smoothed(logps, params)
    assert_close(out.losses, expected.losses, rtol=0, atol=1e-12)
    assert_close(out.chosen_rewards, expected.chosen_rewards, rtol=0, atol=0)


MARGIN_LOSSES = [dpo, cdpo, robust, hinge, ipo, sigmoid_norm, exo_pair, discopop]


@pytest.mark.parametrize("loss", MARGIN_LOSSES)
def test_gradients_reach_the_policy_and_never_the_reference(loss, token_batch):
    batch = token_batch().logps
    policy_chosen = batch.policy_chosen.clone().requires_grad_(True)
    policy_rejected = batch.policy_rejected.clone().requires_grad_(True)
    logps = PairLogps(policy_chosen, policy_rejected, batch.chosen_tokens,
                      batch.rejected_tokens, batch.ref_chosen, batch.ref_rejected)
    out = loss(logps, LossParams(beta=0.3, label_smoothing=0.1, sft_weight=0.5))
    out.losses.mean().backward()
    for grad in (policy_chosen.grad, policy_rejected.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad


@pytest.mark.parametrize("loss", MARGIN_LOSSES)
def test_reference_is_detached_even_when_it_carries_gradients(loss, token_batch):
    batch = token_batch().logps
    ref_chosen = batch.ref_chosen.clone().requires_grad_(True)
    ref_rejected = batch.ref_rejected.clone().requires_grad_(True)
    logps = PairLogps(batch.policy_chosen.clone().requires_grad_(True), batch.policy_rejected,
                      batch.chosen_tokens, batch.rejected_tokens, ref_chosen, ref_rejected)
    loss(logps, LossParams(beta=0.3, label_smoothing=0.1)).losses.mean().backward()
    assert ref_chosen.grad is None and ref_rejected.grad is None


# ------------------------------------------------------------------- parity with TRL 1.16

# (our loss, DPOTrainer loss_type, label_smoothing, rewards divided by length)
DPO_TRAINER_CASES = [
    (dpo, "sigmoid", 0.0, False),
    (robust, "robust", 0.2, False),
    (hinge, "hinge", 0.0, False),
    (ipo, "ipo", 0.0, True),
    (sigmoid_norm, "sigmoid_norm", 0.0, False),
    (exo_pair, "exo_pair", 0.1, False),
    (discopop, "discopop", 0.0, False),
]
CASE_IDS = [case[1] for case in DPO_TRAINER_CASES]


def assert_matches_trl(out, expected, logps, per_token_rewards):
    """Losses and rewards to 1e-6; for IPO, TRL logs beta times the summed log-ratios."""
    assert_close(out.losses, expected.losses, rtol=1e-6, atol=1e-6)
    chosen_rewards, rejected_rewards = out.chosen_rewards, out.rejected_rewards
    if per_token_rewards:
        chosen_rewards = chosen_rewards * logps.chosen_tokens
        rejected_rewards = rejected_rewards * logps.rejected_tokens
    assert_close(chosen_rewards, expected.chosen_rewards, rtol=1e-6, atol=1e-6)
    assert_close(rejected_rewards, expected.rejected_rewards, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sft_weight", [0.0, 0.5])
@pytest.mark.parametrize(("loss", "loss_type", "label_smoothing", "per_token_rewards"),
                         DPO_TRAINER_CASES, ids=CASE_IDS)
def test_matches_trl_dpo_trainer(loss, loss_type, label_smoothing, per_token_rewards,
                                 sft_weight, token_batch, trl_dpo):
    """TRL's ``DPOTrainer._compute_loss`` (see conftest), float64, B=16, per pair.

    sft_weight > 0 is TRL's ``loss_type=[<type>, "sft"]`` with ``loss_weights=[1, sft_weight]``.
    discopop at tau = 0.2, so that both of its components count.
    """
    batch = token_batch()
    params = LossParams(beta=0.3, label_smoothing=label_smoothing, sft_weight=sft_weight,
                        discopop_tau=0.2)
    loss_types, weights = [loss_type], [1.0]
    if sft_weight:
        loss_types, weights = [loss_type, "sft"], [1.0, sft_weight]
    expected = trl_dpo(batch, loss_types, params, loss_weights=weights)
    assert_matches_trl(loss(batch.logps, params), expected, batch.logps, per_token_rewards)


# TRL 1.16 cannot run alpha_divergence in float64: it looks up an exp() clamp by dtype, and
# the table has float16, bfloat16 and float32 only (KeyError). Those cases run in float32.
F_DIVERGENCE_CASES = [("forward_kl", 0.5, torch.float64), ("js_divergence", 0.5, torch.float64),
                      ("alpha_divergence", 0.5, torch.float32),
                      ("alpha_divergence", 0.3, torch.float32),
                      ("alpha_divergence", 1.0, torch.float64)]


@pytest.mark.parametrize(("f_divergence", "f_alpha", "dtype"), F_DIVERGENCE_CASES,
                         ids=[f"{f}-{a}" for f, a, _ in F_DIVERGENCE_CASES])
@pytest.mark.parametrize(("loss", "loss_type", "label_smoothing", "per_token_rewards"),
                         DPO_TRAINER_CASES, ids=CASE_IDS)
def test_f_divergences_match_trl(loss, loss_type, label_smoothing, per_token_rewards,
                                 f_divergence, f_alpha, dtype, token_batch, trl_dpo):
    """TRL's ``f_divergence_type`` / ``f_alpha_divergence_coef`` on every loss that applies
    one, per pair, to 1e-6 (float32 where TRL cannot run float64)."""
    batch = token_batch(dtype=dtype)
    params = LossParams(beta=0.3, label_smoothing=label_smoothing, f_divergence=f_divergence,
                        f_alpha=f_alpha, discopop_tau=0.2)
    expected = trl_dpo(batch, [loss_type], params)
    assert_matches_trl(loss(batch.logps, params), expected, batch.logps, per_token_rewards)


def test_alpha_divergence_matches_trl_where_the_exponent_is_clamped(token_batch, trl_dpo):
    """Reference log-probs 200 nats above the policy's: (alpha - 1) log u = 100 is clamped to
    80 in float32 by both, so that every score is the same finite number and the loss log 2."""
    batch = token_batch(dtype=torch.float32)
    batch = dataclasses.replace(batch, ref_logps=batch.ref_logps + 200)
    params = LossParams(beta=0.3, f_divergence="alpha_divergence", f_alpha=0.5)
    out = dpo(batch.logps, params)
    assert_close(out.losses, trl_dpo(batch, ["sigmoid"], params).losses, rtol=1e-6, atol=1e-6)
    assert_close(out.losses, torch.full_like(out.losses, math.log(2)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("loss", "loss_type", "label_smoothing"),
                         [case[:3] for case in DPO_TRAINER_CASES], ids=CASE_IDS)
def test_batch_mean_matches_one_trl_call_on_the_whole_batch(loss, loss_type, label_smoothing,
                                                            token_batch, trl_dpo_mean):
    """The per-pair calls above hide no batch-level step: one call on all 16 pairs agrees."""
    batch = token_batch()
    params = LossParams(beta=0.3, label_smoothing=label_smoothing)
    expected = trl_dpo_mean(batch, [loss_type], params)
    assert_close(loss(batch.logps, params).losses.mean(), expected, rtol=1e-6, atol=1e-6)


def test_hinge_parity_batch_covers_both_sides_of_the_hinge(token_batch, trl_dpo):
    losses = trl_dpo(token_batch(), ["hinge"], LossParams(beta=0.3)).losses
    assert (losses == 0).any() and (losses > 0).any()


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cdpo_matches_trl_conservative_sigmoid(label_smoothing, token_batch, trl_trainer):
    """TRL 1.16's DPOTrainer has no cDPO (its sigmoid loss ignores label_smoothing), so run the
    conservative sigmoid loss of ``CPOTrainer.cpo_loss`` (``loss_type="sigmoid"``): it takes
    ``logits = chosen - rejected``; given the reference log-ratios, that is cDPO's ``l``, and
    its rewards, beta times its inputs, are DPO's."""
    logps = token_batch().logps
    assert logps.ref_chosen is not None and logps.ref_rejected is not None
    trainer = trl_trainer(CPOTrainer, loss_type="sigmoid", beta=0.3,
                          label_smoothing=label_smoothing, alpha=0.0)
    losses, chosen_rewards, rejected_rewards = trainer.cpo_loss(
        logps.policy_chosen - logps.ref_chosen, logps.policy_rejected - logps.ref_rejected)
    out = cdpo(logps, LossParams(beta=0.3, label_smoothing=label_smoothing))
    assert_close(out.losses, losses, rtol=1e-6, atol=1e-6)
    assert_close(out.chosen_rewards, chosen_rewards, rtol=1e-6, atol=1e-6)
    assert_close(out.rejected_rewards, rejected_rewards, rtol=1e-6, atol=1e-6)
