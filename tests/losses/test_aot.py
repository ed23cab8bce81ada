"""AOT (aot, aot_unpaired): hand-worked quantile losses, and TRL parity on whole batches, since
both sort across the batch."""

import pytest
import torch
from torch.testing import assert_close

from preftune.losses import PairLogps
from preftune.losses.aot import aot, aot_unpaired
from preftune.losses.types import LossParams

# Pair A: pc=-1, pr=-2, rc=rr=-1.5: policy margin 1, reference margin 0, log-ratios 0.5, -0.5.
# Pair B: pc=-3, pr=-1, rc=-2, rr=-3: policy margin -2, reference margin 1, log-ratios -1, 2.
TWO_PAIRS = PairLogps(
    policy_chosen=torch.tensor([-1.0, -3.0], dtype=torch.float64),
    policy_rejected=torch.tensor([-2.0, -1.0], dtype=torch.float64),
    chosen_tokens=torch.tensor([1, 1]),
    rejected_tokens=torch.tensor([1, 1]),
    ref_chosen=torch.tensor([-1.5, -2.0], dtype=torch.float64),
    ref_rejected=torch.tensor([-1.5, -3.0], dtype=torch.float64),
)


def test_aot_by_hand():
    """Sorted policy margins (-2, 1) against sorted reference margins (0, 1): d = (-2, 0).

    beta = 0.5: -log sigmoid(-1) = 1.313262 and -log sigmoid(0) = log 2 = 0.693147;
    mean 1.003204. Per pair, DPO would compare 1 with 0 and -2 with 1 instead.
    Rewards stay per pair: 0.5 * (0.5, -1) and 0.5 * (-0.5, 2).
    """
    out = aot(TWO_PAIRS, LossParams(beta=0.5))
    assert_close(out.losses, torch.tensor([1.313262, 0.693147], dtype=torch.float64),
                 rtol=0, atol=1e-6)
    assert out.losses.mean().item() == pytest.approx(1.003204, abs=1e-6)
    assert_close(out.chosen_rewards, torch.tensor([0.25, -0.5], dtype=torch.float64))
    assert_close(out.rejected_rewards, torch.tensor([-0.25, 1.0], dtype=torch.float64))


def test_aot_unpaired_by_hand():
    """Sorted chosen log-ratios (-1, 0.5) against sorted rejected ones (-0.5, 2): d = (-0.5,
    -1.5); beta = 0.5: -log sigmoid(-0.25) = 0.825939, -log sigmoid(-0.75) = 1.136871."""
    out = aot_unpaired(TWO_PAIRS, LossParams(beta=0.5))
    assert_close(out.losses, torch.tensor([0.825939, 1.136871], dtype=torch.float64),
                 rtol=0, atol=1e-6)


def test_label_smoothing_is_cdpo_per_quantile():
    """eps = 0.1 on d = 0 (the second quantile of `test_aot_by_hand`): still log 2."""
    out = aot(TWO_PAIRS, LossParams(beta=0.5, label_smoothing=0.1))
    assert out.losses[1].item() == pytest.approx(0.693147, abs=1e-6)


def test_the_loss_depends_on_the_batch_not_on_each_pair_alone():
    """Pair A alone compares its margin 1 with its reference margin 0: -log sigmoid(0.5). In
    the batch neither quantile's loss is that."""
    pair_a = PairLogps(*(torch.tensor([v], dtype=torch.float64) for v in (-1.0, -2.0)),
                       torch.tensor([1]), torch.tensor([1]),
                       *(torch.tensor([v], dtype=torch.float64) for v in (-1.5, -1.5)))
    alone = aot(pair_a, LossParams(beta=0.5)).losses.item()
    assert alone == pytest.approx(0.474077, abs=1e-6)
    in_batch = aot(TWO_PAIRS, LossParams(beta=0.5)).losses
    assert not torch.isclose(in_batch, torch.tensor(alone, dtype=torch.float64)).any()


@pytest.mark.parametrize(("loss", "loss_type"), [(aot, "aot"), (aot_unpaired, "aot_unpaired")])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_matches_trl_on_the_whole_batch(loss, loss_type, label_smoothing, token_batch,
                                        trl_dpo_mean):
    """One ``DPOTrainer._compute_loss`` on all 16 pairs, float64, to 1e-6."""
    batch = token_batch()
    params = LossParams(beta=0.3, label_smoothing=label_smoothing)
    expected = trl_dpo_mean(batch, [loss_type], params)
    assert_close(loss(batch.logps, params).losses.mean(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("loss", "loss_type"), [(aot, "aot"), (aot_unpaired, "aot_unpaired")])
def test_sft_weight_matches_trl_on_the_whole_batch(loss, loss_type, token_batch, trl_dpo_mean):
    """TRL's ``[<type>, "sft"]``, weights ``[1, 0.5]``: its NLL is over all chosen tokens of the
    batch, so every chosen response has 5 tokens, where that is the mean of per-pair NLLs."""
    batch = token_batch(chosen_tokens=5)
    params = LossParams(beta=0.3, sft_weight=0.5)
    expected = trl_dpo_mean(batch, [loss_type, "sft"], params, loss_weights=[1.0, 0.5])
    assert_close(loss(batch.logps, params).losses.mean(), expected, rtol=1e-6, atol=1e-6)
