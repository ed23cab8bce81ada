"""Anchored losses (nca_pair, bco_pair, sppo_hard, apo_zero, apo_down): hand-worked values,
where each pushes the log-ratios, and per-pair parity with TRL's DPOTrainer."""

import pytest
import torch
from torch.testing import assert_close

from preftune.losses import PairLogps
from preftune.losses.anchored import apo_down, apo_zero, bco_pair, nca_pair, sppo_hard
from preftune.losses.types import LossParams

# pc=-1, pr=-2, rc=rr=-1.5: log-ratios 0.5 and -0.5; with beta = 0.5 the rewards are
# r_c = 0.25 and r_r = -0.25.
EXAMPLE = PairLogps(
    policy_chosen=torch.tensor([-1.0], dtype=torch.float64),
    policy_rejected=torch.tensor([-2.0], dtype=torch.float64),
    chosen_tokens=torch.tensor([2]),
    rejected_tokens=torch.tensor([4]),
    ref_chosen=torch.tensor([-1.5], dtype=torch.float64),
    ref_rejected=torch.tensor([-1.5], dtype=torch.float64),
)
PARAMS = LossParams(beta=0.5)


def at(chosen_logratio: float, rejected_logratio: float) -> PairLogps:
    def t(value: float) -> torch.Tensor:
        return torch.tensor([value], dtype=torch.float64)
    return PairLogps(t(chosen_logratio), t(rejected_logratio), torch.tensor([1]),
                     torch.tensor([1]), t(0.0), t(0.0))


def test_nca_pair_by_hand():
    """log sigmoid(0.25) = -0.575939, log sigmoid(-0.25) = -0.825939.

    loss = -log sigmoid(r_c) - 0.5 log sigmoid(-r_c) - 0.5 log sigmoid(-r_r)
         = 0.575939 + 0.5 * 0.825939 + 0.5 * 0.575939 = 1.276879.
    """
    out = nca_pair(EXAMPLE, PARAMS)
    assert out.losses.item() == pytest.approx(1.276879, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.25, abs=1e-12)
    assert out.rejected_rewards.item() == pytest.approx(-0.25, abs=1e-12)


def test_bco_pair_by_hand():
    """-log sigmoid(0.25) - log sigmoid(0.25) = 2 * 0.575939 = 1.151879."""
    assert bco_pair(EXAMPLE, PARAMS).losses.item() == pytest.approx(1.151879, abs=1e-6)


def test_sppo_hard_by_hand():
    """Targets +-1/(2 beta) = +-1: (0.5 - 1)^2 + (-0.5 + 1)^2 = 0.25 + 0.25 = 0.5."""
    assert sppo_hard(EXAMPLE, PARAMS).losses.item() == pytest.approx(0.5, abs=1e-12)


def test_apo_zero_by_hand():
    """sigmoid(0.25) = 0.562177, sigmoid(-0.25) = 0.437823: 1 - 0.562177 + 0.437823 = 0.875646."""
    assert apo_zero(EXAMPLE, PARAMS).losses.item() == pytest.approx(0.875646, abs=1e-6)


def test_apo_down_by_hand():
    """sigmoid(0.25) + 1 - sigmoid(0.25 + 0.25) = 0.562177 + 1 - 0.622459 = 0.939718."""
    assert apo_down(EXAMPLE, PARAMS).losses.item() == pytest.approx(0.939717, abs=1e-6)


def test_sppo_hard_is_zero_at_its_targets():
    assert sppo_hard(at(1.0, -1.0), PARAMS).losses.item() == 0.0


@pytest.mark.parametrize(("loss", "rejected_logratio", "chosen_moves", "rejected_moves"), [
    (nca_pair, 0.0, 1, -1),
    (bco_pair, 0.0, 1, -1),
    (apo_zero, 0.0, 1, -1),
    # down and further down; at equal log-ratios APO-down's chosen gradient is 0
    (apo_down, -1.0, -1, -1),
], ids=["nca_pair", "bco_pair", "apo_zero", "apo_down"])
def test_gradient_descent_moves_each_log_ratio_as_the_paper_says(loss, rejected_logratio,
                                                                  chosen_moves, rejected_moves):
    """From a chosen log-ratio of 0, the sign of the descent step (-grad) of each log-ratio."""
    logps = at(0.0, rejected_logratio)
    logps.policy_chosen.requires_grad_(True)
    logps.policy_rejected.requires_grad_(True)
    loss(logps, PARAMS).losses.sum().backward()
    assert logps.policy_chosen.grad is not None and logps.policy_rejected.grad is not None
    assert (-logps.policy_chosen.grad.item()) * chosen_moves > 0
    assert (-logps.policy_rejected.grad.item()) * rejected_moves > 0


# ------------------------------------------------------------------- parity with TRL 1.16

CASES = [(nca_pair, "nca_pair"), (bco_pair, "bco_pair"), (sppo_hard, "sppo_hard"),
         (apo_zero, "apo_zero"), (apo_down, "apo_down")]


@pytest.mark.parametrize("sft_weight", [0.0, 0.5])
@pytest.mark.parametrize(("loss", "loss_type"), CASES, ids=[c[1] for c in CASES])
def test_matches_trl_dpo_trainer(loss, loss_type, sft_weight, token_batch, trl_dpo):
    """TRL's ``DPOTrainer._compute_loss`` (see conftest), float64, B=16, per pair; sft_weight
    as TRL's ``[<type>, "sft"]`` with weights ``[1, sft_weight]``."""
    batch = token_batch()
    params = LossParams(beta=0.3, sft_weight=sft_weight)
    loss_types, weights = ([loss_type, "sft"], [1.0, sft_weight]) if sft_weight else \
        ([loss_type], [1.0])
    expected = trl_dpo(batch, loss_types, params, loss_weights=weights)
    out = loss(batch.logps, params)
    assert_close(out.losses, expected.losses, rtol=1e-6, atol=1e-6)
    assert_close(out.chosen_rewards, expected.chosen_rewards, rtol=1e-6, atol=1e-6)
    assert_close(out.rejected_rewards, expected.rejected_rewards, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("loss", "loss_type"), CASES, ids=[c[1] for c in CASES])
def test_f_divergence_does_not_apply(loss, loss_type, token_batch):
    """These losses take raw log-ratios (TRL refuses another divergence with them when it is
    configured): f_divergence changes nothing."""
    logps = token_batch().logps
    plain = loss(logps, LossParams(beta=0.3)).losses
    scored = loss(logps, LossParams(beta=0.3, f_divergence="forward_kl")).losses
    assert torch.equal(plain, scored)
