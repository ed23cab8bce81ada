

from preftune.data.validate import load_preferences
from preftune.evaluation import Scoring, evaluate
from preftune.runs.locate import locate


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
