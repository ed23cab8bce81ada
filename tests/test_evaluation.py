import json

import pytest

from preftune.data.validate import load_preferences
from preftune.errors import UsageError
from preftune.evaluation import Scoring, evaluate, locate


def test_trained_run_beats_the_untrained_base_on_its_training_data(trained_run, sample_pairs):
    data = load_preferences(sample_pairs)
    run = locate(trained_run)
    scoring = Scoring.choose(run)
    assert scoring.algo == "dpo" and scoring.reference == "tiny"
    trained = evaluate(run, data, scoring, max_length=256, max_prompt_length=128)
    base = evaluate(locate("tiny"), data, scoring, max_length=256, max_prompt_length=128)
    assert trained.summary["pairs"] == 64 == len(trained.per_pair)
    assert trained.summary["preference_accuracy"] > 0.9
    assert trained.summary["preference_accuracy"] > base.summary["preference_accuracy"]
    assert trained.summary["loss"] < base.summary["loss"]
    assert base.summary["reward_margin"] == 0.0  # the base is its own reference


def test_scoring_by_run_config_flags_and_reference_free(trained_run):
    run = locate(trained_run)
    assert Scoring.choose(run, algo="simpo").reference is None
    assert Scoring.choose(run, beta=0.5).params.beta == 0.5
    plain = Scoring.choose(locate("tiny"))
    assert plain.reference is None and plain.algo == "sft"
    assert "reference-free" in plain.description
    assert Scoring.choose(locate("tiny"), reference="tiny").reference == "tiny"


def test_locate_checkpoints(trained_run):
    assert locate(trained_run).model_dir.endswith("final")
    latest = locate(trained_run, "latest")
    assert latest.model_dir.endswith("checkpoints/step-24/model")
    assert locate(trained_run, "step-8").model_dir.endswith("checkpoints/step-8/model")
    with pytest.raises(UsageError, match="no checkpoint 'step-99'") as info:
        locate(trained_run, "step-99")
    assert "step-8, step-16, step-24" in info.value.hints[0]
    manifest = [json.loads(line) for line in
                (trained_run / "checkpoints.jsonl").read_text().splitlines()]
    assert [r["name"] for r in manifest] == ["step-8", "step-16", "step-24"]
