"""The registry and what holds for every loss: names, reference checks, shapes, sft_weight."""

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from preftune.losses import LOSSES, REFERENCE_FREE, LossOutput, LossParams, PairLogps
from preftune.losses.sft import chosen_nll

NEEDS_REFERENCE = sorted(set(LOSSES) - REFERENCE_FREE)


def test_registry_names():
    assert set(LOSSES) == {"dpo", "ipo", "cdpo", "robust", "hinge", "simpo", "orpo", "sft"}
    assert frozenset({"simpo", "orpo", "sft"}) == REFERENCE_FREE


@pytest.mark.parametrize("name", NEEDS_REFERENCE)
def test_missing_reference_is_an_error_naming_the_loss(name, token_batch):
    logps = dataclasses.replace(token_batch().logps, ref_rejected=None)
    with pytest.raises(ValueError, match=f"loss '{name}' needs reference log-probs"):
        LOSSES[name](logps, LossParams())


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_gives_per_pair_losses_and_detached_rewards(name, token_batch):
    batch = token_batch().logps
    policy_chosen = batch.policy_chosen.clone().requires_grad_(True)
    logps = dataclasses.replace(batch, policy_chosen=policy_chosen)
    if name in REFERENCE_FREE:
        logps = dataclasses.replace(logps, ref_chosen=None, ref_rejected=None)
    out = LOSSES[name](logps, LossParams(beta=0.3, label_smoothing=0.1))
    assert isinstance(out, LossOutput)
    for tensor in (out.losses, out.chosen_rewards, out.rejected_rewards):
        assert tensor.shape == (16,) and torch.isfinite(tensor).all()
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    out.losses.mean().backward()
    assert policy_chosen.grad is not None and torch.isfinite(policy_chosen.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_sft_weight_adds_the_chosen_nll_except_to_sft_and_orpo(name, token_batch):
    logps = token_batch().logps
    plain = LOSSES[name](logps, LossParams(beta=0.3)).losses
    weighted = LOSSES[name](logps, LossParams(beta=0.3, sft_weight=0.4)).losses
    added = 0.0 * plain if name in {"sft", "orpo"} else 0.4 * chosen_nll(logps)
    assert_close(weighted - plain, added, rtol=0, atol=1e-12)


def test_int_and_float_token_counts_agree(token_batch):
    logps = token_batch().logps
    as_float = dataclasses.replace(logps, chosen_tokens=logps.chosen_tokens.double(),
                                   rejected_tokens=logps.rejected_tokens.double())
    for loss in LOSSES.values():
        assert_close(loss(as_float, LossParams()).losses, loss(logps, LossParams()).losses)


@pytest.mark.parametrize(("field", "value"), [("beta", 0.0), ("label_smoothing", 0.5),
                                              ("label_smoothing", -0.1),
                                              ("gamma_beta_ratio", -1.0), ("sft_weight", -0.5)])
def test_params_out_of_range_are_errors_quoting_the_value(field, value):
    with pytest.raises(ValueError, match=f"{field} must .*got {value}"):
        LossParams(**{field: value})


def test_inputs_and_params_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        LossParams().beta = 1.0  # type: ignore[misc]
    logps = PairLogps(torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        logps.ref_chosen = torch.zeros(1)  # type: ignore[misc]
