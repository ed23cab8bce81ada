"""The registry and what holds for every loss: names, reference checks, shapes, sft_weight."""

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from preftune.losses import (
    ALGORITHMS,
    LOSSES,
    REFERENCE_FREE,
    LossOutput,
    LossParams,
    PairLogps,
)
from preftune.losses.sft import chosen_nll

NEEDS_REFERENCE = sorted(set(LOSSES) - REFERENCE_FREE)


def with_labels(name: str, logps: PairLogps) -> PairLogps:
    """`logps` as the algorithm's data: unpaired ones get labels, every other one desirable."""
    if ALGORITHMS[name].data == "paired":
        return logps
    return dataclasses.replace(logps, labels=torch.arange(len(logps.policy_chosen)) % 2 == 0)


def test_registry_names():
    assert set(LOSSES) == {
        "dpo", "ipo", "cdpo", "robust", "hinge", "sigmoid_norm", "exo_pair", "discopop",
        "nca_pair", "bco_pair", "sppo_hard", "apo_zero", "apo_down", "aot", "aot_unpaired",
        "kto", "apo_zero_unpaired", "simpo", "orpo", "sft"}
    assert frozenset({"simpo", "orpo", "sft"}) == REFERENCE_FREE


@pytest.mark.parametrize("name", NEEDS_REFERENCE)
def test_missing_reference_is_an_error_naming_the_loss(name, token_batch, algorithm_params):
    logps = dataclasses.replace(with_labels(name, token_batch().logps), ref_rejected=None)
    with pytest.raises(ValueError, match=f"loss '{name}' needs reference log-probs"):
        LOSSES[name](logps, algorithm_params(name))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_gives_per_pair_losses_and_detached_rewards(name, token_batch,
                                                                algorithm_params):
    batch = with_labels(name, token_batch().logps)
    policy_chosen = batch.policy_chosen.clone().requires_grad_(True)
    logps = dataclasses.replace(batch, policy_chosen=policy_chosen)
    if name in REFERENCE_FREE:
        logps = dataclasses.replace(logps, ref_chosen=None, ref_rejected=None)
    out = LOSSES[name](logps, algorithm_params(name, beta=0.3, label_smoothing=0.1))
    assert isinstance(out, LossOutput)
    for tensor in (out.losses, out.chosen_rewards, out.rejected_rewards,
                   *out.metrics.values()):
        assert tensor.shape == (16,) and torch.isfinite(tensor).all()
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    assert out.correct is None or (out.correct.shape == (16,) and not out.correct.requires_grad)
    out.losses.mean().backward()
    assert policy_chosen.grad is not None and torch.isfinite(policy_chosen.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_sft_weight_adds_the_chosen_nll_where_the_table_says_it_is_read(name, token_batch,
                                                                         algorithm_params):
    """Every loss listing sft_weight adds it; sft and orpo (an NLL already) and the unpaired
    losses (no chosen response) do not list it."""
    logps = with_labels(name, token_batch().logps)
    plain = LOSSES[name](logps, algorithm_params(name, beta=0.3)).losses
    weighted = LOSSES[name](logps, algorithm_params(name, beta=0.3, sft_weight=0.4)).losses
    reads = "sft_weight" in ALGORITHMS[name].hyperparameters
    added = 0.4 * chosen_nll(logps) if reads else 0.0 * plain
    assert_close(weighted - plain, added, rtol=0, atol=1e-12)
    assert reads == (name not in {"sft", "orpo", "kto", "apo_zero_unpaired"})


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_int_and_float_token_counts_agree(name, token_batch, algorithm_params):
    logps = with_labels(name, token_batch().logps)
    as_float = dataclasses.replace(logps, chosen_tokens=logps.chosen_tokens.double(),
                                   rejected_tokens=logps.rejected_tokens.double())
    params = algorithm_params(name)
    assert_close(LOSSES[name](as_float, params).losses, LOSSES[name](logps, params).losses)


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
