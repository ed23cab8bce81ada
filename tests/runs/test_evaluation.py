import pytest
import torch

from preftune.data.tokenize import tokenize_pairs
from preftune.data.validate import load_preferences
from preftune.engine.logprobs import TokenRows
from preftune.models.load import load_model, load_tokenizer
from preftune.models.locate import locate
from preftune.runs.evaluation import Scoring, average_logps_views, evaluate, rescore


def test_trained_run_beats_the_untrained_base_on_its_training_data(trained_run, sample_pairs):
    data = load_preferences(sample_pairs)
    run = locate(trained_run)
    scoring = Scoring.choose(run)
    assert scoring.algo == "dpo" and scoring.reference == "tiny"
    trained = evaluate(run, data, scoring, max_length=256, max_prompt_length=128)
    base = evaluate(locate("tiny"), data, scoring.for_model(locate("tiny")), max_length=256,
                    max_prompt_length=128)
    assert trained.summary["pairs"] == 64 == len(trained.per_pair)
    assert trained.summary["preference_accuracy"] > 0.9
    # On one scale (average log-probs), training moved the run toward the chosen responses.
    (trained_avg, base_view) = average_logps_views([trained, base])
    assert base_view is None and trained_avg is not None
    assert trained_avg.summary["preference_accuracy"] > base.summary["preference_accuracy"]
    assert trained_avg.summary["reward_margin"] > base.summary["reward_margin"]


def _average_logps_by_hand(sample_pairs) -> list[tuple[float, float]]:
    """(chosen, rejected) mean token log-prob of every pair under the plain HF tiny model,
    one unpadded sequence at a time."""
    rows = TokenRows.from_dataset(tokenize_pairs(load_preferences(sample_pairs),
                                                 load_tokenizer("tiny"), 256, 128).rows)
    model = load_model("tiny").eval()

    def mean_logp(prompt: list[int], response: list[int]) -> float:
        ids = torch.tensor([prompt + response])  # (1, T)
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]  # (T-1, V): position t predicts token t+1
        token_logps = logits.log_softmax(-1).gather(1, ids[0, 1:, None])[:, 0]  # (T-1,)
        return float(token_logps[len(prompt) - 1:].mean())

    return [(mean_logp(p, c), mean_logp(p, r)) for p, c, r in
            zip(rows.prompt_ids, rows.chosen_ids, rows.rejected_ids, strict=True)]


def test_the_reference_is_scored_by_average_logps_not_against_itself(trained_run,
                                                                     sample_pairs):
    scoring = Scoring.choose(locate(trained_run))
    tiny = locate("tiny")
    assert scoring.is_reference(tiny) and not scoring.is_reference(locate(trained_run))
    used = scoring.for_model(tiny)
    assert used.reference is None and used.label == "reference-free"
    assert scoring.for_model(locate(trained_run)) is scoring
    base = evaluate(tiny, load_preferences(sample_pairs), used, max_length=256,
                    max_prompt_length=128)
    by_hand = _average_logps_by_hand(sample_pairs)
    for row, (chosen, rejected) in zip(base.per_pair, by_hand, strict=True):
        assert row["chosen_reward"] == pytest.approx(chosen, abs=1e-4)
        assert row["rejected_reward"] == pytest.approx(rejected, abs=1e-4)
    accuracy = sum(c > r for c, r in by_hand) / len(by_hand)
    assert 0 < accuracy < 1  # against itself it was 0
    assert base.summary["preference_accuracy"] == accuracy
    assert base.summary["reward_margin"] == pytest.approx(
        sum(c - r for c, r in by_hand) / len(by_hand), abs=1e-4)


def test_rescore_by_average_logps_needs_no_forward_pass(trained_run, sample_pairs):
    run = locate(trained_run)
    scoring = Scoring.choose(run)
    data = load_preferences(sample_pairs)
    trained = evaluate(run, data, scoring, max_length=256, max_prompt_length=128)
    again = rescore(trained, Scoring.average_logps(scoring.params))
    live = evaluate(run, data, Scoring.average_logps(scoring.params), max_length=256,
                    max_prompt_length=128)
    assert again.summary == pytest.approx(live.summary, abs=1e-5)
    row = again.per_pair[0]
    assert row["chosen_reward"] == pytest.approx(row["chosen_logps"] / row["chosen_tokens"])
    with pytest.raises(ValueError, match="reference-free"):
        rescore(trained, scoring)
    assert average_logps_views([trained, trained]) == [None, None]


def test_scoring_by_run_config_flags_and_reference_free(trained_run):
    run = locate(trained_run)
    assert Scoring.choose(run, algo="simpo").reference is None
    assert Scoring.choose(run, beta=0.5).params.beta == 0.5
    plain = Scoring.choose(locate("tiny"))
    assert plain.reference is None and plain.algo == "sft"
    assert "reference-free" in plain.description and plain.label == "reference-free"
    assert Scoring.choose(run, algo="sft").description == plain.description
    assert Scoring.choose(locate("tiny"), reference="tiny").reference == "tiny"
