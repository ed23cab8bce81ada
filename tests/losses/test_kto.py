"""Unpaired losses (kto, apo_zero_unpaired): hand-worked values, the KL term, KTO accuracy, and
parity with TRL's ``KTOTrainer._compute_loss``."""

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from preftune.losses import PairLogps
from preftune.losses.kto import apo_zero_unpaired, kto
from preftune.losses.types import LossParams


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# Example 1, desirable: log-ratio -1 - (-2) = 1. Example 2, undesirable: -2 - (-1.5) = -0.5.
# Mismatched completions: -3 - (-3.2) = 0.2 and -2 - (-2.4) = 0.4, so KL = 0.3.
EXAMPLES = PairLogps(
    policy_chosen=t(-1.0, -2.0), policy_rejected=t(-3.0, -2.0),
    chosen_tokens=torch.tensor([3, 2]), rejected_tokens=torch.tensor([4, 3]),
    ref_chosen=t(-2.0, -1.5), ref_rejected=t(-3.2, -2.4),
    labels=torch.tensor([True, False]),
)
PARAMS = LossParams(beta=1.0, desirable_weight=1.0, undesirable_weight=2.0)


def test_kto_by_hand():
    """beta = 1, weights 1 and 2, KL = (0.2 + 0.4) / 2 = 0.3.

    desirable: 1 - sigmoid(1 - 0.3) = 1 - 0.668188 = 0.331812.
    undesirable: 2 * (1 - sigmoid(0.3 - (-0.5))) = 2 * (1 - 0.689974) = 0.620051.
    Both are on their label's side of KL (1 > 0.3, -0.5 < 0.3): accuracy 1.
    Rewards: the examples' 1 and -0.5 against the baseline 0.3.
    """
    out = kto(EXAMPLES, PARAMS)
    assert_close(out.losses, t(0.331812, 0.620051), rtol=0, atol=1e-6)
    assert out.correct is not None and out.correct.tolist() == [True, True]
    assert_close(out.chosen_rewards, t(1.0, -0.5))
    assert_close(out.rejected_rewards, t(0.3, 0.3))
    assert_close(out.metrics["kl"], t(0.3, 0.3))


def test_kto_accuracy_is_the_side_of_kl_not_the_reward_order():
    """The desirable example at log-ratio 0.2 < KL 0.3 is wrong although its reward beats the
    undesirable one's; the undesirable one at 0.4 > 0.3 is wrong too."""
    logps = dataclasses.replace(EXAMPLES, policy_chosen=t(-1.8, -1.1))  # log-ratios 0.2, 0.4
    out = kto(logps, PARAMS)
    assert out.correct is not None and out.correct.tolist() == [False, False]


def test_kl_is_clamped_at_zero_and_carries_no_gradient():
    """Mismatched log-ratios -0.2 and -0.4: mean -0.3, clamped to 0, so the desirable loss is
    1 - sigmoid(1) = 0.268941; the mismatched completions get no gradient."""
    policy_chosen = EXAMPLES.policy_chosen.clone().requires_grad_(True)
    policy_rejected = t(-3.4, -2.8).requires_grad_(True)
    logps = dataclasses.replace(EXAMPLES, policy_chosen=policy_chosen,
                                policy_rejected=policy_rejected)
    out = kto(logps, PARAMS)
    assert out.metrics["kl"][0].item() == 0.0
    assert out.losses[0].item() == pytest.approx(0.268941, abs=1e-6)
    out.losses.sum().backward()
    assert policy_chosen.grad is not None and policy_rejected.grad is None


def test_apo_zero_unpaired_by_hand():
    """beta = 1, no KL: desirable 1 - sigmoid(1) = 0.268941; undesirable
    2 * sigmoid(-0.5) = 2 * 0.377541 = 0.755081."""
    out = apo_zero_unpaired(EXAMPLES, PARAMS)
    assert_close(out.losses, t(0.268941, 0.755081), rtol=0, atol=1e-6)
    assert_close(out.rejected_rewards, t(0.0, 0.0))
    assert out.correct is not None and out.correct.tolist() == [True, True]


@pytest.mark.parametrize("loss", [kto, apo_zero_unpaired])
def test_missing_labels_are_an_error_naming_the_loss(loss):
    with pytest.raises(ValueError, match=f"loss '{loss.__name__}' trains on unpaired data"):
        loss(dataclasses.replace(EXAMPLES, labels=None), PARAMS)


@pytest.mark.parametrize("loss", [kto, apo_zero_unpaired])
def test_integer_labels_read_as_booleans(loss):
    integer = dataclasses.replace(EXAMPLES, labels=torch.tensor([1, 0]))
    assert torch.equal(loss(integer, PARAMS).losses, loss(EXAMPLES, PARAMS).losses)


@pytest.mark.parametrize("loss", [kto, apo_zero_unpaired])
def test_policy_equal_to_reference_gives_half_a_class_weight_per_example(loss):
    logps = dataclasses.replace(EXAMPLES, ref_chosen=EXAMPLES.policy_chosen,
                                ref_rejected=EXAMPLES.policy_rejected)
    assert_close(loss(logps, PARAMS).losses, t(0.5, 1.0))


# ------------------------------------------------------------------- parity with TRL 1.16

LABELS = torch.arange(16) % 3 != 0  # 10 desirable, 6 undesirable


@pytest.mark.parametrize("loss_type", ["kto", "apo_zero_unpaired"])
@pytest.mark.parametrize("kl_shift", [0.0, -5.0], ids=["kl-clamped", "kl-positive"])
def test_matches_trl_kto_trainer(loss_type, kl_shift, token_batch, trl_kto):
    """TRL's ``KTOTrainer._compute_loss`` on 16 examples and their 16 mismatched completions,
    float64, unequal class weights: the batch loss, KL and mean rewards per class to 1e-6.

    The random batch's mismatched log-ratios average below 0 (KL clamped to 0); lowering their
    reference log-probs by 5 gives a positive KL.
    """
    batch = token_batch()
    shift = torch.cat([torch.zeros(16), torch.full((16,), kl_shift)]).double()
    batch = dataclasses.replace(batch, ref_logps=batch.ref_logps + shift)
    params = LossParams(beta=0.3, desirable_weight=1.0, undesirable_weight=1.5)
    expected = trl_kto(batch, LABELS, loss_type, params)
    out = {"kto": kto, "apo_zero_unpaired": apo_zero_unpaired}[loss_type](
        dataclasses.replace(batch.logps, labels=LABELS), params)
    assert_close(out.losses.mean(), expected.loss, rtol=1e-6, atol=1e-6)
    assert out.metrics["kl"][0].item() == pytest.approx(expected.metrics["kl"], abs=1e-6)
    if loss_type == "kto":
        assert (expected.metrics["kl"] > 0) == (kl_shift < 0)
    assert out.chosen_rewards[LABELS].mean().item() == pytest.approx(
        expected.metrics["rewards/chosen"], abs=1e-6)
    assert out.chosen_rewards[~LABELS].mean().item() == pytest.approx(
        expected.metrics["rewards/rejected"], abs=1e-6)
