"""The algorithm table: it names exactly the loss functions there are, each start value holds,
mixtures and WPO weighting match TRL, and docs/algorithms.md lists the same algorithms."""

import dataclasses
import importlib
import inspect
import math
import pkgutil
import re
import typing
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close
from trl import DPOConfig

import preftune.losses
from preftune.losses import ALGORITHMS, LOSSES, LossOutput, LossParams, PairLogps
from preftune.losses.table import data_kind, mixture_loss, resolve, start_loss

DOC = Path(__file__).parents[2] / "docs" / "algorithms.md"
LN2 = math.log(2)


def public_loss_functions() -> dict[str, typing.Callable]:
    """Every public function of a preftune.losses module typed (PairLogps, LossParams) ->
    LossOutput, by its module-qualified name."""
    found = {}
    for info in pkgutil.iter_modules(preftune.losses.__path__):
        module = importlib.import_module(f"preftune.losses.{info.name}")
        for name, fn in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(fn) or \
                    fn.__module__ != module.__name__:
                continue
            hints = typing.get_type_hints(fn)
            if list(hints.values()) == [PairLogps, LossParams, LossOutput]:
                found[f"{module.__name__}.{name}"] = fn
    return found


def test_the_table_names_every_loss_function_and_nothing_else():
    functions = public_loss_functions()
    in_table = {a.loss for a in ALGORITHMS.values()}
    missing = sorted(name for name, fn in functions.items() if fn not in in_table)
    assert not missing, f"loss functions with no table entry: {missing}"
    absent = sorted(a.name for a in ALGORITHMS.values() if a.loss not in functions.values())
    assert not absent, f"table entries whose loss is no public loss function: {absent}"
    for algorithm in ALGORITHMS.values():
        assert algorithm.loss.__name__ == algorithm.name  # one name for the entry and the code


def trl_dpo_loss_types() -> set[str]:
    """The ``DPOConfig.loss_type`` values TRL 1.16 documents."""
    help_text = DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    return set(re.findall(r"`'(\w+)'`", help_text))


def test_the_table_has_every_trl_dpo_loss_type():
    trl_types = trl_dpo_loss_types()
    assert len(trl_types) == 15
    assert trl_types <= {a.trl_name for a in ALGORITHMS.values()}
    assert set(WEIGHTED_TYPES) == trl_types - {"aot", "aot_unpaired"}  # WPO's parity cases


def test_trl_names_resolve_to_the_entries():
    assert resolve("sigmoid") == "dpo"
    assert resolve(" SIGMOID_NORM ") == "sigmoid_norm"
    with pytest.raises(KeyError):
        resolve("slic")


def test_a_mixture_trains_on_one_kind_of_data():
    assert data_kind(["dpo", "bco_pair", "sft"]) == "paired"
    assert data_kind(["kto"]) == "unpaired"
    with pytest.raises(ValueError, match="mixes paired and unpaired"):
        data_kind(["dpo", "kto"])


# ------------------------------------------------------------------------- start values


def at_reference(token_batch, name: str) -> PairLogps:
    """A random batch with the reference equal to the policy, labelled for unpaired data."""
    logps = token_batch().logps
    logps = dataclasses.replace(logps, ref_chosen=logps.policy_chosen,
                                ref_rejected=logps.policy_rejected)
    if ALGORITHMS[name].data == "unpaired":
        logps = dataclasses.replace(logps, labels=torch.arange(16) % 3 == 0)
    return logps


@pytest.mark.parametrize("beta", [0.1, 0.7])
@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_start_value_holds_where_policy_equals_reference(name, beta, token_batch,
                                                               algorithm_params):
    """The table's start value, at the algorithm's own defaults, is the mean loss of a random
    batch whose reference is the policy; None only for the reference-free losses."""
    params = algorithm_params(name, beta=beta)
    expected = ALGORITHMS[name].start(params)
    if expected is None:
        assert not ALGORITHMS[name].needs_reference
        return
    loss = mixture_loss([name])(at_reference(token_batch, name), params).losses.mean()
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert start_loss([name], params) == expected


@pytest.mark.parametrize("name", ["kto", "apo_zero_unpaired"])
def test_unpaired_start_is_unknown_when_the_class_weights_differ(name, token_batch):
    """Weights 1 and 3, so each example starts at 0.5 or 1.5: 6 desirable examples of 16 give
    (6 * 0.5 + 10 * 1.5) / 16 = 1.125, 8 of 16 give 1; the table says None rather than guess
    the mix."""
    params = LossParams(desirable_weight=1.0, undesirable_weight=3.0)
    logps = at_reference(token_batch, name)
    assert ALGORITHMS[name].start(params) is None
    six = LOSSES[name](logps, params).losses.mean().item()
    eight = LOSSES[name](dataclasses.replace(logps, labels=torch.arange(16) % 2 == 0),
                         params).losses.mean().item()
    assert (six, eight) == (pytest.approx(1.125, abs=1e-12), pytest.approx(1.0, abs=1e-12))


def test_start_loss_is_unknown_with_an_sft_term_or_wpo_weighting():
    assert start_loss(["dpo"], LossParams(sft_weight=0.1)) is None
    assert start_loss(["kto"], LossParams(sft_weight=0.1)) == 0.5  # kto reads no sft_weight
    assert start_loss(["dpo"], LossParams(use_weighting=True)) is None


def test_start_of_a_mixture_is_the_weighted_sum_of_its_parts():
    params = LossParams(beta=0.5)
    assert start_loss(["dpo", "bco_pair", "ipo"], params, [0.8, 0.2, 1.0]) == pytest.approx(
        0.8 * LN2 + 0.2 * 2 * LN2 + 1.0)
    assert start_loss(["dpo", "bco_pair", "sft"], params, [0.8, 0.2, 1.0]) is None


# ------------------------------------------------------------------------------ mixtures

# pc=-1, pr=-2, rc=rr=-1.5, 2 and 4 tokens: log-ratios 0.5 and -0.5.
EXAMPLE = PairLogps(
    policy_chosen=torch.tensor([-1.0], dtype=torch.float64),
    policy_rejected=torch.tensor([-2.0], dtype=torch.float64),
    chosen_tokens=torch.tensor([2]),
    rejected_tokens=torch.tensor([4]),
    ref_chosen=torch.tensor([-1.5], dtype=torch.float64),
    ref_rejected=torch.tensor([-1.5], dtype=torch.float64),
)


def test_mixture_by_hand():
    """beta = 0.5: dpo -log sigmoid(0.5) = 0.474077; bco_pair -2 log sigmoid(0.25) = 1.151879;
    sft 1/2 = 0.5. 0.8 * 0.474077 + 0.2 * 1.151879 + 1 * 0.5 = 0.379262 + 0.230376 + 0.5
    = 1.109637. Rewards are the first part's (dpo: 0.25, -0.25)."""
    out = mixture_loss(["dpo", "bco_pair", "sft"], [0.8, 0.2, 1.0])(EXAMPLE, LossParams(beta=0.5))
    assert out.losses.item() == pytest.approx(1.109637, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.25, abs=1e-12)
    assert {k: round(v.item(), 6) for k, v in out.metrics.items()} == {
        "loss/dpo": 0.474077, "loss/bco_pair": 1.151879, "loss/sft": 0.5}


def test_one_algorithm_is_its_loss_times_its_weight_without_part_metrics(token_batch):
    logps = token_batch().logps
    plain = LOSSES["dpo"](logps, LossParams())
    alone = mixture_loss(["dpo"])(logps, LossParams())
    assert torch.equal(alone.losses, plain.losses) and alone.metrics == {}
    assert_close(mixture_loss(["dpo"], [2.0])(logps, LossParams()).losses, 2 * plain.losses)


def test_weights_must_match_the_algorithms():
    with pytest.raises(ValueError, match="2 loss weights for 3 algorithms"):
        mixture_loss(["dpo", "bco_pair", "sft"], [0.8, 0.2])


@pytest.mark.parametrize("use_weighting", [False, True], ids=["plain", "wpo"])
def test_three_way_mixture_matches_trl_per_pair(use_weighting, token_batch, trl_dpo):
    """TRL's ``loss_type=["sigmoid", "bco_pair", "sft"]``, ``loss_weights=[0.8, 0.2, 1.0]``
    (MPO), float64, to 1e-6. Compared per pair, a batch of one each: TRL's sft averages over
    the batch's chosen tokens, ours over each pair's, and the two agree on a single pair."""
    batch = token_batch()
    params = LossParams(beta=0.3, use_weighting=use_weighting)
    expected = trl_dpo(batch, ["sigmoid", "bco_pair", "sft"], params,
                       loss_weights=[0.8, 0.2, 1.0])
    logps = batch.weighted_logps if use_weighting else batch.logps
    out = mixture_loss(["dpo", "bco_pair", "sft"], [0.8, 0.2, 1.0])(logps, params)
    assert_close(out.losses, expected.losses, rtol=1e-6, atol=1e-6)
    assert_close(out.chosen_rewards, expected.chosen_rewards, rtol=1e-6, atol=1e-6)
    assert_close(out.rejected_rewards, expected.rejected_rewards, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- WPO weighting


def test_wpo_by_hand():
    """Weights 0.5 and 0.4: the dpo loss 0.474077 times 0.2 = 0.094815; rewards unchanged."""
    logps = dataclasses.replace(EXAMPLE, chosen_weight=torch.tensor([0.5], dtype=torch.float64),
                                rejected_weight=torch.tensor([0.4], dtype=torch.float64))
    out = mixture_loss(["dpo"])(logps, LossParams(beta=0.5, use_weighting=True))
    assert out.losses.item() == pytest.approx(0.094815, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.25, abs=1e-12)
    assert out.metrics["wpo_weight"].item() == pytest.approx(0.2, abs=1e-12)


# DPOTrainer's loss types that WPO applies to: all but aot and aot_unpaired.
WEIGHTED_TYPES = {a.trl_name: a.name for a in ALGORITHMS.values()
                  if a.trl_name in trl_dpo_loss_types() and "use_weighting" in a.hyperparameters}


@pytest.mark.parametrize("loss_type", sorted(WEIGHTED_TYPES))
def test_wpo_matches_trl_for_every_loss_type(loss_type, token_batch, trl_dpo):
    """TRL's ``use_weighting=True``, float64, per pair, to 1e-6: the stand-in model gives TRL
    ``log sum p^2`` of the distributions whose log-probs it returns, and PairLogps gets the
    weights computed from the same token log-probs."""
    batch = token_batch()
    params = LossParams(beta=0.3, label_smoothing=0.1, use_weighting=True)
    expected = trl_dpo(batch, [loss_type], params)
    out = mixture_loss([WEIGHTED_TYPES[loss_type]])(batch.weighted_logps, params)
    assert_close(out.losses, expected.losses, rtol=1e-6, atol=1e-6)
    assert (batch.wpo_weights() - 1).abs().min() > 1e-3  # the weighting is no no-op here


def test_wpo_weighting_without_weights_is_an_error(token_batch):
    with pytest.raises(ValueError, match="chosen_weight or rejected_weight is None"):
        mixture_loss(["dpo"])(token_batch().logps, LossParams(use_weighting=True))


@pytest.mark.parametrize("name", ["aot", "aot_unpaired", "kto"])
def test_wpo_weighting_of_a_loss_without_pairs_is_an_error_naming_it(name, token_batch):
    logps = dataclasses.replace(token_batch().weighted_logps, labels=torch.arange(16) % 2 == 0)
    with pytest.raises(ValueError, match=f"{name} has none"):
        mixture_loss(["dpo", name])(logps, LossParams(use_weighting=True))


# -------------------------------------------------------------------- docs/algorithms.md


def doc_rows() -> dict[str, list[str]]:
    """The algorithm table of docs/algorithms.md: name -> its cells."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 7:
            rows[cells[0].strip("`")] = cells
    return rows


def test_the_docs_list_exactly_the_tables_algorithms():
    rows = doc_rows()
    assert sorted(rows) == sorted(ALGORITHMS)
    for name, (_, reference, data, hyperparameters, *_rest) in rows.items():
        algorithm = ALGORITHMS[name]
        assert reference == ("yes" if algorithm.needs_reference else "no"), name
        assert data == algorithm.data, name
        assert re.findall(r"`(\w+)`", hyperparameters) == list(algorithm.hyperparameters), name
