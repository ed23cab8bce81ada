"""SFT on the chosen responses, and the sft_weight term other losses add."""

import pytest
import torch
from torch.testing import assert_close

from preftune.losses import PairLogps
from preftune.losses.sft import add_sft_term, chosen_nll, sft
from preftune.losses.types import LossParams


def test_sft_by_hand():
    """pc = -3 over 4 tokens, pr = -2 over 1 token.

    loss = 3/4 = 0.75; rewards are the average log-probs: -0.75 and -2 (chosen still wins).
    """
    logps = PairLogps(torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([4]),
                      torch.tensor([1]))
    out = sft(logps, LossParams(beta=0.1))
    assert out.losses.item() == pytest.approx(0.75, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(-0.75, abs=1e-6)
    assert out.rejected_rewards.item() == pytest.approx(-2.0, abs=1e-6)


def test_sft_ignores_every_param():
    logps = PairLogps(torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([4]),
                      torch.tensor([1]))
    loaded = LossParams(beta=2.0, label_smoothing=0.3, gamma_beta_ratio=1.0, sft_weight=5.0)
    assert sft(logps, loaded).losses.item() == sft(logps, LossParams()).losses.item()


def test_empty_response_counts_as_one_token_instead_of_dividing_by_zero():
    logps = PairLogps(torch.tensor([0.0]), torch.tensor([-1.0]), torch.tensor([0]),
                      torch.tensor([1]))
    assert chosen_nll(logps).item() == 0.0


def test_sft_term_adds_the_weighted_nll_and_nothing_at_weight_zero():
    """pc = -3 over 2 tokens: NLL 1.5; weight 0.2 adds 0.3 to each loss."""
    logps = PairLogps(torch.tensor([-3.0, -3.0]), torch.tensor([-1.0, -1.0]),
                      torch.tensor([2, 2]), torch.tensor([1, 1]))
    losses = torch.tensor([1.0, 2.0])
    assert_close(add_sft_term(losses, logps, LossParams(sft_weight=0.2)),
                 torch.tensor([1.3, 2.3]))
    assert add_sft_term(losses, logps, LossParams()) is losses


def test_matches_trl_dpo_trainer_sft(token_batch, trl_dpo):
    """TRL's ``DPOTrainer._compute_loss`` with ``loss_type="sft"`` (see conftest), float64, B=16.

    TRL averages over all chosen tokens of its batch; run once per pair, that is our per-pair
    mean. Its logged rewards are reference log-ratios, not ours, so only losses are compared.
    """
    batch = token_batch()
    expected = trl_dpo(batch, ["sft"], LossParams())
    out = sft(batch.logps, LossParams())
    assert_close(out.losses, expected.losses, rtol=1e-6, atol=1e-6)
