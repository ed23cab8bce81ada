"""Every algorithm of the table trains end to end on the tiny model, and so do mixtures,
f-divergences, LD-DPO and WPO weighting: the loss falls and the logs say what was trained."""

from __future__ import annotations

import json

import pytest

from preftune.config import TrainConfig
from preftune.engine.loop import train
from preftune.losses.table import ALGORITHMS

FAST = {"epochs": 2, "batch_size": 8, "grad_accum": 1, "learning_rate": 2e-3,
        "warmup_steps": 2, "max_length": 256, "max_prompt_length": 128, "logging_steps": 2}
# test_loop.py trains these eight already, checking accuracy too.
COVERED = {"dpo", "ipo", "cdpo", "robust", "hinge", "simpo", "orpo", "sft"}
PAIRED = sorted(n for n, a in ALGORITHMS.items() if a.data == "paired" and n not in COVERED)
# DiscoPOP's gradient at a zero margin points to negative margins (the exponential part it
# blends in weighs more as the margin grows): at 2e-3 its loss dips, then climbs back.
OVERRIDES = {"discopop": {"learning_rate": 5e-4}}


def _rows(run_dir) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]


def _train(tmp_path, data, **values) -> tuple:
    cfg = TrainConfig(**{**FAST, "dataset": str(data), "output_dir": str(tmp_path / "run"),
                         **values})
    result = train(cfg)
    return result, _rows(result.run_dir)


@pytest.mark.parametrize("algo", PAIRED)
def test_every_paired_algorithm_of_the_table_trains(algo, sample_pairs, tmp_path):
    result, rows = _train(tmp_path, sample_pairs, algo=algo, **OVERRIDES.get(algo, {}))
    assert result.steps == 16
    assert rows[-1]["loss"] < rows[0]["loss"], [r["loss"] for r in rows]


def test_the_first_loss_is_the_tables_start_value(sample_pairs, tmp_path):
    """At step 1 policy = reference, so the loss is the table's start value; logging every
    step shows it before the first update changes anything."""
    _, rows = _train(tmp_path, sample_pairs, algo="bco_pair", logging_steps=1, max_steps=1)
    start = ALGORITHMS["bco_pair"].start(TrainConfig(algo="bco_pair").loss_params())
    assert rows[0]["loss"] == pytest.approx(start, rel=1e-5)


def test_a_three_way_mixture_trains_and_logs_each_part(sample_pairs, tmp_path):
    result, rows = _train(tmp_path, sample_pairs, algo=["dpo", "bco_pair", "sft"],
                          loss_weights=[0.8, 0.2, 1.0], lora=False)
    assert rows[-1]["loss"] < rows[0]["loss"]
    for row in rows:
        parts = 0.8 * row["loss/dpo"] + 0.2 * row["loss/bco_pair"] + 1.0 * row["loss/sft"]
        assert row["loss"] == pytest.approx(parts, rel=1e-5)
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["config"]["algo"] == ["dpo", "bco_pair", "sft"]


def test_trls_names_and_list_spelling_are_accepted(sample_pairs, tmp_path):
    cfg = TrainConfig.build({"loss_type": ["sigmoid", "bco_pair"], "loss_weights": "1,0.5"})
    assert cfg.algorithms == ("dpo", "bco_pair") and cfg.loss_weights == [1.0, 0.5]
    assert TrainConfig.build({"algo": "sigmoid"}).algo == "dpo"


@pytest.mark.parametrize("divergence", ["forward_kl", "js_divergence", "alpha_divergence"])
def test_each_f_divergence_trains(divergence, sample_pairs, tmp_path):
    _, rows = _train(tmp_path, sample_pairs, f_divergence=divergence)
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_ld_dpo_and_wpo_train(sample_pairs, tmp_path):
    _, rows = _train(tmp_path, sample_pairs, ld_alpha=0.5, use_weighting=True)
    assert rows[-1]["loss"] < rows[0]["loss"]


@pytest.fixture(scope="module")
def unpaired_examples(tmp_path_factory):
    """128 unpaired examples from the 64 sample pairs, shuffled: (prompt, completion, label)."""
    import random

    from preftune.data.sample import iter_samples

    records = []
    for i, s in enumerate(iter_samples(64, seed=5)):
        records.append({"prompt": s.prompt, "completion": s.responses[0], "label": True})
        rejected = s.responses[1 + i % (len(s.responses) - 1)]
        records.append({"prompt": s.prompt, "completion": rejected, "label": False})
    random.Random(0).shuffle(records)
    path = tmp_path_factory.mktemp("kto") / "examples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_kto_learns_from_unpaired_examples(unpaired_examples, tmp_path):
    """KTO's accuracy: the share of examples on their label's side of the KL baseline."""
    result, rows = _train(tmp_path, unpaired_examples, algo="kto")
    assert result.steps == 32  # 128 examples, 8 a batch, 2 epochs
    assert rows[0]["loss"] == pytest.approx(0.5, abs=0.01)  # policy = reference: 1 - σ(0)
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.03
    assert rows[-1]["accuracy"] > 0.8 > rows[0]["accuracy"]
    assert all(r["kl"] >= 0 for r in rows) and rows[-1]["kl"] > rows[0]["kl"]
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["data"]["train"]["desirable"] == record["data"]["train"]["undesirable"] == 64


def test_kto_splits_pairs_into_desirable_and_undesirable_examples(sample_pairs, tmp_path):
    result, rows = _train(tmp_path, sample_pairs, algo="kto")
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["data"]["train"]["examples"] == 128  # 64 pairs, two examples each
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_unpaired_examples_for_a_paired_algorithm_exit_3(cli, unpaired_examples, tmp_path):
    result = cli("train", "--dataset", unpaired_examples, "--algo", "dpo",
                 "--output-dir", tmp_path / "r")
    assert result.code == 3
    assert "unpaired examples" in result.err and "algo=kto" in result.err
    assert not (tmp_path / "r").exists()


def test_kto_rows_take_the_fast_paths_with_the_plain_paths_values(unpaired_examples, tmp_path):
    """An example and its KL completion share the prompt like a pair's two responses: the
    packed, chunked pass gives the plain pass's losses."""
    plain = {"shared_prompt": False, "pack_pairs": False, "chunked_logps": False}
    _, fast_rows = _train(tmp_path / "fast", unpaired_examples, algo="kto", max_steps=4,
                          logging_steps=1)
    _, plain_rows = _train(tmp_path / "plain", unpaired_examples, algo="kto", max_steps=4,
                           logging_steps=1, **plain)
    for fast, slow in zip(fast_rows, plain_rows, strict=True):
        # At step 1 every log-ratio is 0 up to float noise, which decides accuracy.
        keys = ("loss", "kl", "chosen_logps", "rejected_logps") + (
            ("accuracy",) if fast["step"] > 1 else ())
        for key in keys:
            assert fast[key] == pytest.approx(slow[key], rel=1e-4, abs=2e-4), key
