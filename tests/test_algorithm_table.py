"""Everything that names an algorithm reads the one table: config validation, the CLI's help,
the service's method types, the model card, the docs and the losses package."""

from __future__ import annotations

from pathlib import Path

import pytest

from preftune.config import TrainConfig
from preftune.losses import LOSSES, REFERENCE_FREE
from preftune.losses.table import ALGORITHMS, HYPERPARAMETERS
from preftune.models.export import model_card
from preftune.service.jobspec import METHODS, build_spec

ROOT = Path(__file__).resolve().parents[1]
NAMES = sorted(ALGORITHMS)


def _config(name: str) -> TrainConfig:
    return TrainConfig.build({"algo": name, "batch_size": 2})


@pytest.mark.parametrize("name", NAMES)
def test_config_accepts_every_algorithm_under_its_names(name):
    algorithm = ALGORITHMS[name]
    assert _config(name).algo == name
    for alias in algorithm.aliases:
        assert _config(alias).algo == name
    for key, value in algorithm.defaults.items():
        assert getattr(_config(name), key) == value


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_is_complete(name):
    algorithm = ALGORITHMS[name]
    assert algorithm.data in ("paired", "unpaired")
    assert algorithm.description and algorithm.paper
    assert set(algorithm.hyperparameters) <= set(HYPERPARAMETERS)
    assert set(algorithm.hyperparameters) <= set(TrainConfig.model_fields)
    assert LOSSES[name] is algorithm.loss
    assert (name in REFERENCE_FREE) == (not algorithm.needs_reference)


def test_the_cli_help_and_the_service_list_the_table():
    for name in NAMES:
        assert name in TrainConfig.model_fields["algo"].description  # --algo's help
        assert METHODS[name] == name
        for alias in ALGORITHMS[name].aliases:
            assert METHODS[alias] == name
    assert set(METHODS) - set(NAMES) - {a for x in ALGORITHMS.values() for a in x.aliases} \
        == {"supervised", "mixture", "reinforcement"}


@pytest.mark.parametrize("name", NAMES)
def test_the_service_accepts_every_method_type(name):
    spec = build_spec("tiny", {"type": name, name: {"hyperparameters": {"batch_size": 2}}},
                      None, seed=1)
    assert spec.config["algo"] == name
    assert spec.method["type"] == name


def test_the_service_accepts_a_mixture():
    spec = build_spec("tiny", {"type": "mixture", "mixture": {"hyperparameters": {
        "loss_type": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0]}}},
        None, seed=1)
    assert spec.config["algo"] == ["dpo", "bco_pair", "sft"]
    assert spec.config["loss_weights"] == [0.8, 0.2, 1.0]
    hyper = spec.method["mixture"]["hyperparameters"]
    assert hyper["loss_type"] == ["dpo", "bco_pair", "sft"]


@pytest.mark.parametrize("name", NAMES)
def test_the_model_card_cites_the_paper(name):
    record = {"config": _config(name).model_dump(mode="json"), "data": {}}
    card = model_card(record, [], "adapter", "out")
    assert ALGORITHMS[name].paper in card
    assert f"- {name}" in card


def test_the_docs_list_every_algorithm():
    doc = (ROOT / "docs" / "algorithms.md").read_text(encoding="utf-8")
    for name in NAMES:
        assert f"`{name}`" in doc, name


def test_the_model_card_counts_unpaired_examples():
    record = {"config": _config("kto").model_dump(mode="json"),
              "data": {"source": "kto.jsonl", "train": {"examples": 128, "desirable": 70,
                                                        "undesirable": 58}}}
    card = model_card(record, [], "adapter", "out")
    assert "| training examples | 128 |" in card
    assert "| desirable / undesirable | 70 / 58 |" in card
    assert "training pairs" not in card
