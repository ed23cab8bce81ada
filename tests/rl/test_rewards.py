"""Reward functions worked out by hand, answer extraction, and the registry's start-up checks."""

import math
import sys
import textwrap

import pytest

from preftune.errors import ConfigError, DataError, ExitCode, TrainingError
from preftune.rl import rewards as rewards_module
from preftune.rl.rewards import (
    REWARDS,
    accuracy,
    after_last_hashes,
    build_rewards,
    cosine_scaled,
    format_match,
    last_boxed,
    last_number,
    length,
    marked_answer,
    parse_number,
    register,
    repetition_penalty,
    score_group,
)


def test_registered_names():
    assert set(REWARDS) == {"length", "accuracy", "format", "repetition_penalty",
                            "cosine_scaled", "combined", "grader"}


# --- length ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("completion", "expected"), [
    ("", 0.0),                 # 1 - |0 - 10| / 10 = 0
    ("x" * 10, 1.0),           # at the target
    ("x" * 15, 0.5),           # 1 - 5 / 10
    ("x" * 6, 0.6),            # 1 - 4 / 10
    ("x" * 25, 0.0),           # 1 - 15 / 10 < 0, clamped
])
def test_length_in_characters(completion, expected):
    assert length(completion, None, target=10) == pytest.approx(expected)


def test_length_in_words():
    # 3 words against a target of 4: 1 - 1/4; 30 characters would be far past 4.
    assert length("alpha beta  gamma\n", None, target=4, unit="words") == pytest.approx(0.75)


# --- answer extraction ----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    (r"so \boxed{42}.", "42"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),                   # nested braces kept
    (r"first \boxed{1}, then \boxed{{a}+{b}}", "{a}+{b}"),      # the last one
    (r"\boxed{7} and a truncated \boxed{8", "7"),                # unclosed: the one before
    ("no box here", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("work #### 12", "12"),
    ("#### 3 is wrong, so #### 5", "5"),                        # the last ####
    ("#### 72\n\nSome explanation after.", "72"),               # first line after it
    ("#### ", ""),
    ("no marker", None),
])
def test_after_last_hashes(text, expected):
    assert after_last_hashes(text) == expected


def test_boxed_wins_over_hashes():
    assert marked_answer(r"#### \boxed{ 9 }") == "9"
    assert marked_answer("Natalia sold 48/2 = 24 clips.\n#### 72") == "72"


@pytest.mark.parametrize(("text", "expected"), [
    ("1,000", 1000.0),
    ("$1,000.", 1000.0),       # dollar sign and trailing period
    (r"\$5", 5.0),             # LaTeX-escaped dollar
    ("-3.5", -3.5),
    ("42.0", 42.0),
    (".5", 0.5),
    (" 1,234,567 ", 1234567.0),
    ("1,00", None),            # not thousands grouping
    ("12 apples", None),       # a number must be the whole string
    ("x", None),
])
def test_parse_number(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("she had 3 then -7.5", -7.5),
    ("x = -4", -4.0),
    ("pages 3-5", 5.0),                  # a dash after a digit is no minus sign
    ("the total is $1,200.", 1200.0),
    ("version v2 ships", None),          # digits inside a word are no number
    ("nothing", None),
])
def test_last_number(text, expected):
    assert last_number(text) == expected


# --- accuracy -------------------------------------------------------------------------------

@pytest.mark.parametrize(("completion", "answer", "expected"), [
    ("#### 42", "42", 1.0),
    ("#### 42.0", "42", 1.0),                             # float vs int
    (r"so \boxed{1,000}", "1000", 1.0),                   # commas
    ("#### $1,000.", "1000", 1.0),                        # dollar and trailing period
    ("#### -3", "-3", 1.0),                               # negative
    ("#### 0.25", ".25", 1.0),                            # decimals
    ("#### 41", "42", 0.0),
    ("The answer is 42.", "42", 1.0),                     # no mark: the last number
    ("42 is wrong; it is 43", "42", 0.0),                 # no mark: the LAST number
    ("... 48/2 = 24\n#### 72", "She sold 48/2 = 24.\n#### 72", 1.0),   # GSM8K reference
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}", 1.0),        # exact, not numeric
    (r"\boxed{\frac{1}{2}}", "2", 0.0),                   # a marked answer must be a number
    ("#### Paris", "Paris.", 1.0),                        # exact, trailing period dropped
    ("  Paris ", "Paris", 1.0),                           # no mark: the stripped text
    ("#### paris", "Paris", 0.0),                         # exact is case-sensitive
    ("#### ", "", 0.0),                                   # an empty answer matches nothing
])
def test_accuracy(completion, answer, expected):
    assert accuracy(completion, answer) == expected


def test_accuracy_relative_tolerance():
    # |100.5 - 100| = 0.5 <= 0.01 * max(100.5, 100) = 1.005, but not <= 1e-6 * 100.5.
    assert accuracy("#### 100.5", "100", rel_tol=0.01) == 1.0
    assert accuracy("#### 100.5", "100") == 0.0


def test_accuracy_without_a_reference_answer_is_a_data_error():
    with pytest.raises(DataError, match="needs a reference answer") as err:
        accuracy("#### 1", None)
    assert any("answer_field" in hint for hint in err.value.hints)


# --- format ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("completion", "expected"), [
    ("<think>2 + 2 = 4</think> #### 4", 1.0),
    ("\n<think>step 1\nstep 2</think>\nThe answer is 4.", 1.0),    # spans lines
    ("<think></think> 4", 0.0),                                     # empty reasoning
    ("<think>2 + 2</think>   ", 0.0),                               # no answer after it
    ("4 <think>late</think> 4", 0.0),                               # fullmatch: from the start
    ("<think>never closed 4", 0.0),
])
def test_format_default_pattern(completion, expected):
    assert format_match(completion, None) == expected


def test_format_search_and_fullmatch_modes():
    assert format_match("x #### 4", None, pattern=r"####\s*\d+", mode="search") == 1.0
    assert format_match("x #### 4", None, pattern=r"####\s*\d+", mode="fullmatch") == 0.0


# --- repetition_penalty ---------------------------------------------------------------------

@pytest.mark.parametrize(("completion", "n", "max_penalty", "expected"), [
    # trigrams abc, bca, cab, abc: 4 in all, 3 distinct, 1 repeat: -1/4
    ("a b c a b c", 3, 1.0, -0.25),
    # unigrams a, a, b: 1 repeat of 3, scaled by 0.6: -0.6 * 1/3
    ("a a b", 1, 0.6, -0.2),
    # lowercased bigrams (the cat) (cat the) (the cat): 1 repeat of 3
    ("The cat the cat", 2, 1.0, -1 / 3),
    # trigrams of "a a a a a": 3, all the same, 2 repeats
    ("a a a a a", 3, 1.0, -2 / 3),
    ("the cat sat on the mat", 3, 1.0, 0.0),     # no repeated trigram
    ("a a", 3, 1.0, 0.0),                        # fewer words than n
])
def test_repetition_penalty(completion, n, max_penalty, expected):
    assert repetition_penalty(completion, None, n=n, max_penalty=max_penalty) == \
        pytest.approx(expected)


# --- cosine_scaled --------------------------------------------------------------------------
# Defaults: correct in [0.5, 1.0], wrong in [-1.0, -0.5]; c = cos(pi * L / max_len).
# "#### 7" is 6 characters.

@pytest.mark.parametrize(("max_len", "expected"), [
    (6, 0.5),                                      # L = max_len: c = -1, min_c
    (12, 0.75),                                    # L = max_len/2: c = 0, halfway
    (24, 0.5 + 0.5 * (1 + math.sqrt(0.5)) / 2),    # L = max_len/4: c = cos(pi/4) = 0.7071
    (3, 0.5),                                      # past max_len: clamped to min_c
    (6_000_000, 1.0),                              # L ~ 0: c ~ 1, max_c
])
def test_cosine_scaled_correct_answers_earn_more_when_short(max_len, expected):
    assert cosine_scaled("#### 7", "7", max_len=max_len) == pytest.approx(expected)


@pytest.mark.parametrize(("completion", "max_len", "expected"), [
    ("", 6, -1.0),            # L = 0: c = 1, -0.5 + (-1.0 + 0.5) * 2/2 = min_w
    ("#### 8", 12, -0.75),    # L = max_len/2: c = 0, -0.5 + (-0.5) * 1/2
    ("#### 8", 6, -0.5),      # L = max_len: c = -1, max_w
])
def test_cosine_scaled_wrong_answers_lose_less_when_long(completion, max_len, expected):
    assert cosine_scaled(completion, "7", max_len=max_len) == pytest.approx(expected)


def test_cosine_scaled_custom_range_in_words():
    # 2 words ("#### 7") of max_len 4: c = cos(pi/2) = 0, so the middle of [1, 2].
    assert cosine_scaled("#### 7", "7", min_value_correct=1.0, max_value_correct=2.0,
                         max_len=4, unit="words") == pytest.approx(1.5)


# --- RewardSet, weights, combined -----------------------------------------------------------

def test_weighted_sum_breakdown_and_group():
    rewards = build_rewards([{"type": "accuracy", "weight": 1.0},
                             {"type": "repetition_penalty", "weight": 0.2, "params": {"n": 1}}])
    item = {"answer": "7"}
    # unigrams 7, 7, ####, 7: 2 repeats of 4 -> -0.5; total 1.0 * 1 + 0.2 * -0.5 = 0.9
    assert rewards.breakdown("7 7 #### 7", item) == {"accuracy": 1.0,
                                                     "repetition_penalty": -0.5}
    assert rewards("7 7 #### 7", item) == pytest.approx(0.9)
    # "#### 8": wrong, no repeats: 0
    assert score_group(rewards, ["7 7 #### 7", "#### 8"], item) == pytest.approx([0.9, 0.0])


def test_names_alone_get_weight_one_and_repeats_get_unique_labels():
    rewards = build_rewards(["format", {"type": "format", "params": {"pattern": "x"}}])
    assert rewards.labels == ["format", "format#2"]
    assert [term.weight for term in rewards.terms] == [1.0, 1.0]
    # default pattern fails (no <think>); "x" fullmatches "x": 1.0 * 0 + 1.0 * 1
    assert rewards("x", {}) == 1.0


def test_combined_is_a_weighted_sum_of_its_rewards():
    rewards = build_rewards([{"type": "combined", "weight": 2.0, "params": {"rewards": [
        {"type": "accuracy", "weight": 0.5},
        {"type": "format", "params": {"pattern": "####", "mode": "search"}},
    ]}}])
    item = {"answer": "7"}
    assert rewards("#### 8", item) == pytest.approx(2.0)   # 2 * (0.5 * 0 + 1 * 1)
    assert rewards("#### 7", item) == pytest.approx(3.0)   # 2 * (0.5 * 1 + 1 * 1)


def test_answer_field_names_the_items_column():
    rewards = build_rewards(["accuracy"], answer_field="solution")
    assert rewards("The total is 1234.", {"solution": "... #### 1,234"}) == 1.0
    assert build_rewards(["accuracy"])("#### 42", {"answer": 42}) == 1.0   # an int answer
    with pytest.raises(DataError, match="reference answer"):
        rewards("#### 1", {"answer": "1"})


def test_int_params_are_accepted_where_a_float_is_declared():
    rewards = build_rewards([{"type": "repetition_penalty", "params": {"max_penalty": 2}}])
    assert rewards.terms[0].params == {"max_penalty": 2.0}
    assert isinstance(rewards.terms[0].params["max_penalty"], float)


# --- start-up errors ------------------------------------------------------------------------

def test_unknown_reward_lists_the_registered_names():
    with pytest.raises(ConfigError) as err:
        build_rewards(["accuracy", "acuracy"])
    assert err.value.exit_code == ExitCode.USAGE
    assert "rewards[1]: unknown reward 'acuracy'" in err.value.message
    for name in REWARDS:
        assert name in err.value.message
    assert "did you mean 'accuracy'?" in err.value.hints
    assert any("module:function" in hint for hint in err.value.hints)


@pytest.mark.parametrize(("spec", "match"), [
    ({"type": "repetition_penalty", "params": {"max_penalt": 1.0}},
     "rewards\\[0\\]: reward 'repetition_penalty' has no param 'max_penalt'"),
    ({"type": "repetition_penalty", "params": {"n": "3"}},
     "rewards\\[0\\].params.n \\(reward 'repetition_penalty'\\) must be an integer, got '3'"),
    ({"type": "accuracy", "params": {"rel_tol": True}},
     "params.rel_tol \\(reward 'accuracy'\\) must be a number, got True"),
    ({"type": "length", "params": {"target": 5, "unit": "tokens"}},
     "params.unit \\(reward 'length'\\) must be one of 'chars', 'words', got 'tokens'"),
    ({"type": "length"}, "reward 'length' needs param 'target'"),
    ({"type": "length", "params": {"target": 0}}, "'target' must be at least 1, got 0"),
    ({"type": "repetition_penalty", "params": {"n": 0}}, "'n' must be at least 1"),
    ({"type": "format", "params": {"pattern": "("}}, "'pattern' is not a valid regular"),
    ({"type": "cosine_scaled", "params": {"min_value_wrong": 0.0}},
     "'min_value_wrong' \\(0.0\\) is above 'max_value_wrong' \\(-0.5\\)"),
    ({"type": "accuracy", "wieght": 2.0}, "rewards\\[0\\] has unknown key 'wieght'"),
    ({"type": "accuracy", "weight": "high"}, "weight of reward 'accuracy' must be a number"),
    ({"weight": 1.0}, "rewards\\[0\\] needs 'type'"),
    ({"type": "combined", "params": {"rewards": ["format", "nope"]}},
     "rewards\\[0\\].params.rewards\\[1\\]: unknown reward 'nope'"),
    ({"type": "combined", "params": {"rewards": "format"}},
     "params.rewards \\(reward 'combined'\\) must be a list of reward specs"),
    (3, "rewards\\[0\\] must be a reward name or a mapping"),
])
def test_bad_specs_are_config_errors_naming_reward_and_param(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_rewards([spec])


def test_unknown_param_hints_the_close_name_and_lists_the_params():
    with pytest.raises(ConfigError) as err:
        build_rewards([{"type": "repetition_penalty", "params": {"max_penalt": 1.0}}])
    assert err.value.hints == ["did you mean 'max_penalty'?", "its params: n, max_penalty"]


@pytest.mark.parametrize("specs", ["accuracy", [], {"type": "accuracy"}])
def test_specs_must_be_a_non_empty_list(specs):
    with pytest.raises(ConfigError, match="^rewards (must be a list|is empty)"):
        build_rewards(specs)


# --- custom rewards -------------------------------------------------------------------------

CUSTOM = "preftune_test_custom_rewards"


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    """A module of custom rewards in tmp_path, importable as CUSTOM."""
    (tmp_path / f"{CUSTOM}.py").write_text(textwrap.dedent("""
        def has_word(completion, answer, *, word="yes"):
            return 1.0 if word in completion else 0.0

        def count_tests(completion, answer, *, item, scale=1.0):
            return scale * len(item["tests"])

        def says_high(completion, answer):
            return "high"

        def one_arg(completion):
            return 0.0

        NOT_A_FUNCTION = 3
    """))
    (tmp_path / "preftune_test_exploding.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield CUSTOM
    for name in (CUSTOM, "preftune_test_exploding"):
        sys.modules.pop(name, None)


def test_custom_reward_by_module_and_function(custom_module):
    rewards = build_rewards([{"type": f"{custom_module}:has_word", "weight": 0.5,
                              "params": {"word": "ok"}}])
    assert rewards.labels == [f"{custom_module}:has_word"]
    assert rewards("it is ok", {}) == 0.5      # 0.5 * 1.0
    assert rewards("it is not", {}) == 0.0


def test_custom_reward_that_declares_item_gets_the_row(custom_module):
    rewards = build_rewards([{"type": f"{custom_module}:count_tests", "params": {"scale": 2}}])
    assert rewards("anything", {"tests": ["a", "b", "c"]}) == 6.0    # 2 * 3 tests


@pytest.mark.parametrize(("function", "match"), [
    ("NOT_A_FUNCTION", "is not callable \\(it is the int 3\\)"),
    ("missing", f"module '{CUSTOM}' has no attribute 'missing'"),
    ("one_arg", "does not take \\(completion, answer\\)"),
])
def test_custom_reward_errors_name_it(custom_module, function, match):
    with pytest.raises(ConfigError, match=match):
        build_rewards([f"{custom_module}:{function}"])


def test_custom_reward_params_are_checked(custom_module):
    with pytest.raises(ConfigError, match="has no param 'words'"):
        build_rewards([{"type": f"{custom_module}:has_word", "params": {"words": "x"}}])


def test_custom_module_that_cannot_be_imported(custom_module):
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_xyz'"):
        build_rewards(["no_such_module_xyz:fn"])
    with pytest.raises(ConfigError, match="RuntimeError: boom"):
        build_rewards(["preftune_test_exploding:fn"])


def test_custom_reward_returning_no_number_fails_naming_it(custom_module):
    rewards = build_rewards([f"{custom_module}:says_high"])
    with pytest.raises(TrainingError, match=f"reward '{custom_module}:says_high' returned 'high'"):
        rewards("x", {})


# --- grader: OpenAI graders as rewards -------------------------------------------------------

EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
         "reference": "{{item.answer}}", "operation": "eq"}


def grader_reward(grader, weight=1.0, **params):
    return build_rewards([{"type": "grader", "weight": weight,
                           "params": {"grader": grader, **params}}])


def test_grader_reward_scores_with_the_items_fields():
    # eq on "42" and the item's "42" → 1.0, times the weight 0.5; "41" → 0.0.
    rewards = grader_reward(EXACT, weight=0.5)
    assert score_group(rewards, ["42", "41"], {"answer": "42"}) == [0.5, 0.0]
    assert rewards.breakdown("42", {"answer": 42}) == {"grader": 1.0}  # a number, as "42"


def test_grader_reward_with_a_multi_grader():
    # fmt: "7" == "7" → 1; sim: rouge_l of "a b c d" against "a b x d": LCS 3 of 4 each side,
    # F1 0.75; 0.5 * 1 + 0.5 * 0.75 = 0.875.
    grader = {"type": "multi", "name": "both", "calculate_output": "0.5 * fmt + 0.5 * sim",
              "graders": {"fmt": {**EXACT, "name": "fmt", "input": "{{sample.output_json.a}}"},
                          "sim": {"type": "text_similarity", "name": "sim",
                                  "input": "{{sample.output_json.w}}",
                                  "reference": "{{item.words}}",
                                  "evaluation_metric": "rouge_l"}}}
    rewards = grader_reward(grader)
    item = {"answer": "7", "words": "a b x d"}
    assert rewards('{"a": "7", "w": "a b c d"}', item) == pytest.approx(0.875)


def test_grader_reward_with_a_python_grader_and_one_that_fails():
    # 1 - |len("hello") - len("abc")| / 10 = 0.8; a grader that raises scores 0.0
    length = {"type": "python", "name": "len", "source": (
        "def grade(sample, item):\n"
        "    return 1 - abs(len(sample['output_text']) - len(item['answer'])) / 10\n")}
    assert grader_reward(length)("hello", {"answer": "abc"}) == pytest.approx(0.8)
    broken = {**length, "source": "def grade(sample, item):\n    return 1 / 0\n"}
    assert grader_reward(broken)("hello", {"answer": "abc"}) == 0.0


def test_an_item_without_the_graders_field_is_a_data_error():
    with pytest.raises(DataError, match=r"grader 'exact' reads item.answer, which the item "
                                        r"lacks \(its fields: solution\)"):
        grader_reward(EXACT)("42", {"solution": "42"})


@pytest.mark.parametrize(("grader", "match"), [
    ({**EXACT, "operation": "equals"},
     r"rewards\[0\].params.grader.operation: expected one of eq, ne, like, ilike, got "
     r"'equals' \(reward 'grader'\)"),
    ({"type": "multi", "name": "m", "calculate_output": "a + b", "graders": {"a": EXACT}},
     r"rewards\[0\].params.grader.calculate_output: unknown name b"),
    ({**EXACT, "type": "text_similarity", "evaluation_metric": "cosine", "operation": None},
     r"rewards\[0\].params.grader.operation: unknown field"),
    ({"type": "text_similarity", "name": "sim", "input": "x", "reference": "y",
      "evaluation_metric": "cosine"},
     r"rewards\[0\]: reward 'grader': grader 'sim' uses evaluation_metric cosine: set params "
     r"'embedding_base_url' \(an OpenAI-compatible endpoint"),
    ({"type": "score_model", "name": "judge", "model": "m",
      "input": [{"role": "user", "content": "{{sample.output_text}}"}]},
     r"reward 'grader': grader 'judge' is a score_model grader: set param "
     r"'score_model_base_url'"),
    ("exact", r"rewards\[0\].params.grader: expected an object"),
])
def test_a_bad_grader_fails_at_build_time_naming_the_reward(grader, match):
    with pytest.raises(ConfigError, match=match):
        grader_reward(grader)


def test_an_embedding_endpoint_needs_its_model():
    with pytest.raises(ConfigError, match="set params 'embedding_base_url' and "
                                          "'embedding_model' together"):
        grader_reward(EXACT, embedding_base_url="http://127.0.0.1:9/v1")


def test_a_cosine_grader_embeds_with_the_configured_endpoint(embeddings, monkeypatch):
    # letter counts: "abb" = (1, 2) over a, b and "ab" = (1, 1): 3 / (sqrt 5 · sqrt 2) = 0.9487;
    # "ccc" shares no letter with "ab": 0.
    monkeypatch.setenv("PREFTUNE_EMBEDDING_API_KEY", "sk-embed")
    cosine = {"type": "text_similarity", "name": "sim", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "evaluation_metric": "cosine"}
    rewards = grader_reward(cosine, embedding_base_url=embeddings.base_url,
                            embedding_model="letters-1")
    assert score_group(rewards, ["abb", "ccc"], {"answer": "ab"}) == \
        pytest.approx([3 / math.sqrt(10), 0.0])
    assert {(auth, body["model"]) for auth, body in embeddings.seen} == \
        {("Bearer sk-embed", "letters-1")}


def test_the_grader_reward_needs_its_grader():
    with pytest.raises(ConfigError, match="reward 'grader' needs param 'grader'"):
        build_rewards(["grader"])


# --- register -------------------------------------------------------------------------------

def test_register_adds_a_reward_with_its_value_check(monkeypatch):
    monkeypatch.setattr(rewards_module, "REWARDS", dict(REWARDS))
    monkeypatch.setattr(rewards_module, "_CHECKS", dict(rewards_module._CHECKS))

    def positive_scale(params):
        if params["scale"] <= 0:
            raise ValueError(f"param 'scale' must be > 0, got {params['scale']}")

    @register("shout", check=positive_scale)
    def shout(completion, answer, *, scale: float = 1.0):
        return scale * completion.count("!")

    assert build_rewards([{"type": "shout", "params": {"scale": 0.5}}])("hi!!", {}) == 1.0
    with pytest.raises(ConfigError, match="reward 'shout': param 'scale' must be > 0"):
        build_rewards([{"type": "shout", "params": {"scale": -1}}])
    with pytest.raises(ValueError, match="already registered"):
        register("shout")(shout)
    with pytest.raises(ValueError, match="contains ':'"):
        register("a:b")
