import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from preftune.data.formats import FORMATS
from preftune.data.reader import read_preferences
from preftune.data.validate import (
    UNPAIRED_SAMPLE_HINT,
    LengthStats,
    load_data,
    load_preferences,
    load_unpaired,
    validate,
)
from preftune.errors import DataError

REPO = Path(__file__).resolve().parents[2]

GOOD = [
    {"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
    {"prompt": "Translate 'coffee' into French.", "chosen": "Café.", "rejected": "Tee."},
    {"prompt": "Say 'thank you' in Japanese.", "chosen": "ありがとう。", "rejected": "Danke."},
    {"prompt": "Greet me in Arabic.", "chosen": "مرحبا!", "rejected": "Hello!"},
]


def _line(record):
    return json.dumps(record, ensure_ascii=False)


def _only_problem(result):
    assert result.dataset is None
    assert result.problem_count == 1, [str(p) for p in result.problems]
    return result.problems[0]


# ------------------------------------------------------------------------------ JSON syntax


def test_invalid_json_in_a_jsonl_line(write_raw):
    broken = ('{"prompt": "Why is the sky blue?", "chosen": "Rayleigh scattering." '
              '"rejected": "Because it is."}')
    path = write_raw("bad.jsonl", "\n".join([_line(GOOD[0]), broken, _line(GOOD[1])]) + "\n")

    result = read_preferences(path)

    problem = _only_problem(result)
    column = broken.index('"rejected"') + 1
    assert (problem.record, problem.line, problem.column) == (1, 2, column)
    assert problem.message == "invalid JSON: Expecting ',' delimiter (each line must be one " \
                              "JSON object)"
    assert str(problem) == f"bad.jsonl:2:{column}: record 1: {problem.message}"
    assert result.format == "flat"
    assert result.num_records == 3


def test_invalid_json_inside_a_json_array(write_raw):
    text = ("[\n"
            f"  {_line(GOOD[0])},\n"
            '  {"prompt": "Name a café drink.", "chosen": "Latte", "rejected": "Cola",},\n'
            f"  {_line(GOOD[1])}\n"
            "]\n")
    path = write_raw("bad.json", text)

    problem = _only_problem(read_preferences(path))

    third = text.splitlines()[2]
    column = third.index(",}") + 2  # the '}' after the trailing comma
    assert (problem.record, problem.line, problem.column) == (1, 3, column)
    assert problem.message == "invalid JSON: Expecting property name enclosed in double quotes"
    assert str(problem) == f"bad.json:3:{column}: record 1: {problem.message}"


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json"])
@pytest.mark.parametrize("content", ["", "  \n\n\t \r\n"], ids=["empty", "whitespace"])
def test_empty_and_whitespace_only_files(write_raw, name, content):
    result = read_preferences(write_raw(name, content))

    problem = _only_problem(result)
    assert str(problem) == f"{name}: file is empty"
    assert (problem.record, problem.line, problem.field) == (None, None, None)
    assert (result.format, result.num_records) == (None, 0)


@pytest.mark.parametrize(("content", "line", "found"), [
    ('"just one long string of text"\n', 1, "text 'just one long string of text'"),
    ("\n42\n", 2, "a number (42)"),
])
def test_wrong_top_level_type(write_raw, content, line, found):
    problem = _only_problem(read_preferences(write_raw("data.json", content)))

    assert problem.line == line
    assert problem.found == found
    assert str(problem) == (f"data.json:{line}: wrong top-level type: expected an array of "
                            f"records or one JSON object per line, found {found}")


def test_non_object_records_inside_an_array(write_json):
    path = write_json("mixed.json", [GOOD[0], "The answer is Paris.", [1, 2],
                                     GOOD[1]])
    lines = path.read_text(encoding="utf-8").splitlines()
    text_line = lines.index('  "The answer is Paris.",') + 1
    list_line = lines.index("  [") + 1

    result = read_preferences(path)

    assert result.problem_count == 2 and result.dataset is None
    assert [(p.record, p.line, p.found) for p in result.problems] == [
        (1, text_line, "text 'The answer is Paris.'"),
        (2, list_line, "a list of 2 items")]
    assert [str(p) for p in result.problems] == [
        f"mixed.json:{text_line}: record 1: expected a JSON object, found text 'The answer is "
        "Paris.'",
        f"mixed.json:{list_line}: record 2: expected a JSON object, found a list of 2 items"]


# ------------------------------------------------------------------------------ UTF-8


def _latin1_line(record):
    return json.dumps(record, ensure_ascii=False).encode("latin-1")


def test_invalid_utf8_in_jsonl_names_line_column_and_record(write_raw):
    records = [
        {"prompt": "Describe a latte.", "responses": ["Espresso with milk.", "Tea."],
         "pairs": [[0, 1]]},
        {"prompt": "Describe a café crème.", "responses": ["Coffee with cream.", "Juice."],
         "pairs": [[0, 1]]},
    ]
    second = _latin1_line(records[1])  # saved by a Windows editor as Latin-1
    path = write_raw("latin1.jsonl", _line(records[0]).encode() + b"\n" + second + b"\n")

    problem = _only_problem(read_preferences(path))

    column = second.index(b"\xe9") + 1
    assert (problem.record, problem.line, problem.column) == (1, 2, column)
    assert (problem.expected, problem.found) == ("UTF-8 text", "byte 0xe9")
    assert str(problem) == (f"latin1.jsonl:2:{column}: record 1: invalid UTF-8: byte 0xe9 "
                            "cannot be decoded (re-save the file as UTF-8)")


def test_invalid_utf8_in_a_later_line_of_flat_jsonl_is_reported(write_raw):
    """Flat JSONL takes the vectorised path: it must not accept undecodable bytes."""
    third = _latin1_line({"prompt": "Où est le café ?", "chosen": "Au coin de la rue.",
                          "rejected": "Je ne sais pas."})
    data = b"".join(_line(r).encode() + b"\n" for r in GOOD[:2]) + third + b"\n"
    path = write_raw("latin1_flat.jsonl", data)

    result = read_preferences(path)

    problem = _only_problem(result)
    column = third.index(b"\xf9") + 1
    assert (problem.record, problem.line, problem.column) == (2, 3, column)
    assert problem.message == ("invalid UTF-8: byte 0xf9 cannot be decoded (re-save the file "
                               "as UTF-8)")


def test_invalid_utf8_in_a_json_array_names_line_and_column(write_raw):
    second = _latin1_line({"prompt": "Où est le café ?", "chosen": "Au coin.",
                           "rejected": "Non."})
    data = b"[\n  " + _line(GOOD[0]).encode() + b",\n  " + second + b"\n]\n"
    path = write_raw("latin1.json", data)

    result = read_preferences(path)

    problem = _only_problem(result)
    column = 2 + second.index(b"\xf9") + 1
    assert (problem.line, problem.column) == (3, column)
    assert str(problem).startswith(f"latin1.json:3:{column}: ")
    assert problem.message.startswith("invalid UTF-8: byte 0xf9 cannot be decoded")


# ----------------------------------------------------------------------------- record fields


def test_no_format_matches_names_every_format_and_why(write_jsonl):
    path = write_jsonl("qa.jsonl", [{"question": "What is 2 + 2?", "answer": "4"}])

    result = read_preferences(path)

    problem = _only_problem(result)
    assert result.format is None
    assert (problem.record, problem.line) == (0, 1)
    assert str(problem).startswith("qa.jsonl:1: record 0: matches no preference format (tried ")
    reasons = {
        "pairs": "no 'responses' or 'pairs' field",
        "flat": "no 'chosen' and 'rejected' fields",
        "implicit": "no 'chosen' and 'rejected' fields",
        "conversational": "no 'prompt', 'chosen' and 'rejected' fields",
        "openai": "no 'input' and 'preferred_output' fields",
        "sharegpt": "no 'conversations' field",
        "unpaired": "no 'completion' and 'label' fields",
    }
    assert set(reasons) == set(FORMATS)
    for fmt, why in reasons.items():
        assert f"{fmt}: {why}" in problem.message
    assert problem.message.endswith("; the record has fields answer, question")
    assert problem.expected == "one of " + ", ".join(FORMATS)


def test_missing_required_field(write_json, record_start_lines):
    records = [
        {"prompt": "Which planet is largest?", "responses": ["Jupiter.", "Mars."]},
        {"prompt": "Which is the smallest?", "responses": ["Mercury.", "Pluto."],
         "pairs": [[0, 1]]},
    ]
    path = write_json("prefs.json", records)

    problem = _only_problem(read_preferences(path))

    line = record_start_lines(path)[0]
    assert (problem.record, problem.line, problem.field) == (0, line, "pairs")
    assert (problem.expected, problem.found) == ("present", "missing")
    assert "record 0: missing required field 'pairs'" in str(problem)
    assert str(problem) == f"prefs.json:{line}: record 0: missing required field 'pairs'"


@pytest.mark.parametrize("name", ["typed.jsonl", "typed.json"])
def test_mistyped_field(write_jsonl, write_json, record_start_lines, name):
    records = [*GOOD[:2], {"prompt": "What is 6 × 7?", "chosen": 42, "rejected": "41"}]
    path = (write_jsonl if name.endswith("jsonl") else write_json)(name, records)
    line = 3 if name.endswith("jsonl") else record_start_lines(path)[2]

    problem = _only_problem(read_preferences(path))

    assert (problem.record, problem.line, problem.field) == (2, line, "chosen")
    assert (problem.expected, problem.found) == ("text", "a number (42)")
    assert str(problem) == (f"{name}:{line}: record 2: field 'chosen': expected text, "
                            "found a number (42)")


@pytest.mark.parametrize("name", ["blank.jsonl", "blank.json"])
def test_empty_text(write_jsonl, write_json, record_start_lines, name):
    records = [GOOD[0], {"prompt": "Explain DPO briefly.", "chosen": "It fits a policy to "
                         "preferences directly.", "rejected": "  \n "}, GOOD[1]]
    path = (write_jsonl if name.endswith("jsonl") else write_json)(name, records)
    line = 2 if name.endswith("jsonl") else record_start_lines(path)[1]

    problem = _only_problem(read_preferences(path))

    assert (problem.record, problem.line, problem.field) == (1, line, "rejected")
    assert (problem.expected, problem.found) == ("non-empty text", "empty text")
    assert str(problem) == f"{name}:{line}: record 1: field 'rejected': empty text"


def test_pair_index_out_of_range_and_same_index(write_jsonl):
    records = [
        {"prompt": "Best way to learn Japanese?", "responses": ["Daily practice.", "Never."],
         "pairs": [[0, 1]]},
        {"prompt": "Capital of Egypt?", "responses": ["Cairo.", "Alexandria.", "Giza."],
         "pairs": [[0, 3], [1, 1], [0, 2]]},
    ]
    result = read_preferences(write_jsonl("pairs.jsonl", records))

    assert result.problem_count == 2 and result.dataset is None
    assert [(p.record, p.line, p.field) for p in result.problems] == [
        (1, 2, "pairs[0]"), (1, 2, "pairs[1]")]
    assert [str(p) for p in result.problems] == [
        "pairs.jsonl:2: record 1: field 'pairs[0]': index 3 out of range: the record has 3 "
        "responses (indices 0 to 2)",
        "pairs.jsonl:2: record 1: field 'pairs[1]': preferred and rejected are the same "
        "response (index 1)"]
    assert result.problems[0].found == "3"


def test_bad_message_role(write_jsonl, conversational_records):
    bad = {"prompt": [{"role": "user", "content": "Hi!"},
                      {"role": "bot", "content": "Hello, how can I help?"},
                      {"role": "user", "content": "Recommend a café in Rome."}],
           "chosen": "Sant'Eustachio Il Caffè.", "rejected": "No."}
    result = read_preferences(write_jsonl("chat.jsonl", [*conversational_records, bad]))

    problem = _only_problem(result)
    assert result.format == "conversational"
    assert (problem.record, problem.line, problem.field) == (2, 3, "prompt[1].role")
    assert problem.found == "'bot'"
    assert str(problem) == ("chat.jsonl:3: record 2: field 'prompt[1].role': bad message role: "
                            "expected one of system, user, assistant, tool, found 'bot'")


@pytest.mark.parametrize(("roles", "field", "says"), [
    (["user", "system"], "prompt[1]",
     "a 'system' message may only come first (roles: user, system)"),
    (["system", "user", "user"], "prompt",
     "two 'user' messages in a row (roles: system, user, user)"),
    (["user", "assistant"], "prompt",
     "a prompt must end with a 'user' message, found 'assistant' last (roles: user, "
     "assistant)"),
], ids=["system-not-first", "two-users", "ends-with-assistant"])
def test_bad_message_order(write_jsonl, conversational_records, roles, field, says):
    texts = {"system": "Be brief.", "user": "Où est la gare ?", "assistant": "Tout droit."}
    bad = {"prompt": [{"role": r, "content": texts[r]} for r in roles],
           "chosen": [{"role": "assistant", "content": "À gauche."}],
           "rejected": [{"role": "assistant", "content": "Je ne sais pas."}]}
    path = write_jsonl("order.jsonl", [conversational_records[0], bad])

    problem = _only_problem(read_preferences(path))

    assert (problem.record, problem.line, problem.field) == (1, 2, field)
    assert str(problem) == f"order.jsonl:2: record 1: field '{field}': bad message order: {says}"


# ------------------------------------------------------------------------- many problems


def test_problems_of_several_records_are_all_collected(write_json, record_start_lines):
    records = [
        GOOD[0],
        {"prompt": "Capital of Japan?", "chosen": ["Tokyo"], "rejected": "Osaka."},
        {"prompt": "Capital of Morocco?", "chosen": "Rabat."},
        GOOD[1],
        {"prompt": " ", "chosen": "Yes.", "rejected": "No."},
    ]
    path = write_json("several.json", records)
    starts = record_start_lines(path)

    result = read_preferences(path)

    assert result.problem_count == 3
    assert [(p.record, p.line, p.field) for p in result.problems] == [
        (1, starts[1], "chosen"), (2, starts[2], "rejected"), (4, starts[4], "prompt")]
    assert [p.message for p in result.problems] == [
        "field 'chosen': expected text like the rest of this dataset (it is not "
        "conversational), found a list of 1 item",
        "missing required field 'rejected'",
        "field 'prompt': empty text"]


@pytest.mark.parametrize("chosen", [7, ""], ids=["record-path", "fast-path"])
def test_only_the_first_twenty_problems_are_kept(write_jsonl, chosen):
    records = [{"prompt": f"Question {i}: what is {i} + {i}?", "chosen": chosen,
                "rejected": "I don't know."} for i in range(25)]

    result = read_preferences(write_jsonl("many.jsonl", records))

    assert result.problem_count == 25
    assert len(result.problems) == 20
    assert [(p.record, p.line, p.field) for p in result.problems] == [
        (i, i + 1, "chosen") for i in range(20)]
    report, dataset = validate(write_jsonl("many.jsonl", records), max_problems=5)
    assert dataset is None and report.valid is False
    assert (len(report.problems), report.problem_count) == (5, 25)


# -------------------------------------------------------------------- duplicates, identical


def test_duplicates_and_identical_pairs_are_counted_and_located(write_jsonl):
    records = [
        GOOD[0],
        {"prompt": "Spell 'café'.", "chosen": "c-a-f-é", "rejected": "c-a-f-é"},
        GOOD[0],
        GOOD[2],
        GOOD[3],
        GOOD[2],
    ]
    report, dataset = validate(write_jsonl("dups.jsonl", records))

    assert report.valid is True and report.problems == []
    assert dataset is not None and len(dataset) == 6
    assert (report.duplicate_pairs, report.identical_pairs) == (2, 1)
    assert sorted(str(w) for w in report.warnings) == [
        "dups.jsonl:2: record 1: identical chosen and rejected: this pair carries no "
        "preference signal",
        "dups.jsonl:3: record 2: duplicate pair: same prompt, chosen and rejected as record 0",
        "dups.jsonl:6: record 5: duplicate pair: same prompt, chosen and rejected as record 3",
    ]
    identical = [w for w in report.warnings if w.message.startswith("identical")]
    assert [(w.record, w.line, w.field) for w in identical] == [(1, 2, "chosen")]


def test_every_repeat_of_a_pair_is_located(write_jsonl):
    """Three copies are two duplicate pairs: both repeats must be shown, not only the last."""
    report, _ = validate(write_jsonl("triple.jsonl", [GOOD[1], GOOD[0], GOOD[1], GOOD[1]]))

    assert report.duplicate_pairs == 2
    assert sorted((w.record, w.line) for w in report.warnings) == [(2, 3), (3, 4)]


def test_duplicate_and_identical_conversational_pairs(write_jsonl, conversational_records):
    same = dict(conversational_records[1])
    same["rejected"] = same["chosen"]
    records = [*conversational_records, conversational_records[0], same]

    report, dataset = validate(write_jsonl("chat.jsonl", records))

    assert report.valid is True and report.conversational is True
    assert (report.duplicate_pairs, report.identical_pairs) == (1, 1)
    assert sorted((w.record, w.line, w.message.split(":")[0]) for w in report.warnings) == [
        (2, 3, "duplicate pair"), (3, 4, "identical chosen and rejected")]


def test_identical_responses_in_pairs_format(write_jsonl):
    records = [{"prompt": "Capital of Italy?", "responses": ["Rome.", "Rome.", "Milan."],
                "pairs": [[0, 2], [0, 1]]}]

    report, _ = validate(write_jsonl("pairs.jsonl", records))

    assert (report.pairs, report.identical_pairs, report.duplicate_pairs) == (2, 1, 0)
    assert [str(w) for w in report.warnings] == [
        "pairs.jsonl:1: record 0: identical chosen and rejected: this pair carries no "
        "preference signal"]


# ---------------------------------------------------------------------------- lengths


def test_character_length_statistics(write_jsonl):
    # Characters, not bytes: 'مر' is 2 characters in 4 bytes.
    records = [
        {"prompt": "Say hi in Arabic.", "chosen": "مر", "rejected": "Hello", "topic": "ar"},
        {"prompt": "One word?", "chosen": "café", "rejected": "No", "topic": "fr"},
        {"prompt": "Greet me.", "chosen": "こんにちは!", "rejected": "Yo", "topic": "ja"},
    ]
    report, _ = validate(write_jsonl("lengths.jsonl", records))

    assert report.chars["chosen"] == LengthStats(min=2, mean=4.0, median=4.0, p95=5.8, max=6)
    assert report.chars["rejected"] == LengthStats(min=2, mean=3.0, median=2.0, p95=4.7, max=5)
    assert report.chars["prompt"] == LengthStats(min=9, mean=11.7, median=9.0, p95=16.2,
                                                 max=17)
    assert (report.format, report.records, report.pairs) == ("flat", 3, 3)
    assert report.conversational is False
    assert report.metadata_columns == ["topic"]
    assert report.tokens is None


def test_conversational_lengths_sum_message_contents(write_jsonl):
    records = [
        {"prompt": [{"role": "system", "content": "Be kind."},        # 8
                    {"role": "user", "content": "Hi"}],               # 2
         "chosen": "Hello!", "rejected": "Go."},
        {"prompt": [{"role": "user", "content": "日本語"}],            # 3
         "chosen": [{"role": "assistant", "content": "はい"}], "rejected": "No"},
    ]
    report, _ = validate(write_jsonl("chat.jsonl", records))

    assert report.chars["prompt"] == LengthStats(min=3, mean=6.5, median=6.5, p95=9.7, max=10)
    assert report.chars["chosen"] == LengthStats(min=2, mean=4.0, median=4.0, p95=5.8, max=6)


def test_token_statistics_with_a_tokenizer(write_jsonl):
    class WordTokenizer:
        chat_template = None

        def __call__(self, texts, add_special_tokens=True):
            assert add_special_tokens is False
            return {"input_ids": [list(range(len(t.split()))) for t in texts]}

    records = [{"prompt": "one two three", "chosen": "a b", "rejected": "x"},
               {"prompt": "one", "chosen": "a b c d", "rejected": "x y"}]
    report, _ = validate(write_jsonl("tok.jsonl", records), tokenizer=WordTokenizer())

    assert report.tokens["prompt"] == LengthStats(min=1, mean=2.0, median=2.0, p95=2.9, max=3)
    assert report.tokens["chosen"] == LengthStats(min=2, mean=3.0, median=3.0, p95=3.9, max=4)


# ------------------------------------------------------------------- load_preferences, CLI


def test_load_preferences_raises_data_error_listing_problems(write_jsonl):
    records = [GOOD[0], {"prompt": "Why?", "chosen": 1, "rejected": "No."},
               {"prompt": "How?", "chosen": "Like this.", "rejected": ""}]
    path = write_jsonl("bad.jsonl", records)

    with pytest.raises(DataError) as info:
        load_preferences(path)

    error = info.value
    assert error.exit_code == 3
    assert error.message == "bad.jsonl: 2 problems found"
    assert error.details == [
        "bad.jsonl:2: record 1: field 'chosen': expected text, found a number (1)",
        "bad.jsonl:3: record 2: field 'rejected': empty text"]
    assert any("preftune sample" in hint for hint in error.hints)


def test_load_preferences_says_how_many_more_problems(write_jsonl):
    records = [{"prompt": f"Q{i}", "chosen": None, "rejected": "No."} for i in range(23)]

    with pytest.raises(DataError) as info:
        load_preferences(write_jsonl("nulls.jsonl", records))

    assert info.value.message == "nulls.jsonl: 23 problems found"
    assert len(info.value.details) == 21
    assert info.value.details[0] == ("nulls.jsonl:1: record 0: field 'chosen': expected text, "
                                     "found null")
    assert info.value.details[-1] == "... and 3 more"


def test_load_preferences_returns_the_dataset(write_jsonl):
    dataset = load_preferences(write_jsonl("good.jsonl", GOOD))

    assert len(dataset) == 4 and dataset.format == "flat"
    assert dataset.table["chosen"].to_pylist() == [r["chosen"] for r in GOOD]


def test_report_to_dict_is_json(write_jsonl):
    report, _ = validate(write_jsonl("bad.jsonl", [GOOD[0], {"prompt": "Q", "chosen": "A"}]))

    data = json.loads(json.dumps(report.to_dict()))

    assert data["valid"] is False
    assert data["problem_count"] == 1
    assert data["problems"] == [{
        "message": "missing required field 'rejected'", "file": "bad.jsonl", "record": 1,
        "line": 2, "field": "rejected", "expected": "present", "found": "missing",
        "text": "bad.jsonl:2: record 1: missing required field 'rejected'"}]


def _preftune(*args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "preftune", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_validate_valid_file(write_jsonl, tmp_path):
    write_jsonl("train.jsonl", GOOD)

    run = _preftune("validate", "train.jsonl", cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    first = run.stdout.splitlines()[0]
    assert first == "train.jsonl: flat (text) format, 4 records, 4 pairs"
    assert run.stdout.rstrip().endswith("valid")
    assert "Traceback" not in run.stdout + run.stderr


def test_cli_validate_invalid_file(write_jsonl, tmp_path):
    path = write_jsonl("bad.jsonl", [GOOD[0], {"prompt": "Q", "chosen": 5, "rejected": "R"},
                                     {"prompt": "Q2", "chosen": "A"}])
    expected = [str(p) for p in read_preferences(path).problems]

    run = _preftune("validate", "bad.jsonl", cwd=tmp_path)

    assert run.returncode == 3
    assert expected == [
        "bad.jsonl:2: record 1: field 'chosen': expected text, found a number (5)",
        "bad.jsonl:3: record 2: missing required field 'rejected'"]
    for line in expected:
        assert f"  {line}" in run.stdout.splitlines()
    assert "problems (2):" in run.stdout
    err = run.stderr.splitlines()
    assert "error: bad.jsonl is not valid: 2 problems found" in err
    assert any(line.startswith("hint:") and "preftune sample" in line for line in err)
    assert "Traceback" not in run.stdout + run.stderr


def test_cli_validate_json_output(write_jsonl, tmp_path):
    write_jsonl("bad.jsonl", [GOOD[0], {"prompt": "Q", "chosen": "", "rejected": "R"}])

    run = _preftune("validate", "--json", "bad.jsonl", cwd=tmp_path)

    assert run.returncode == 3
    report = json.loads(run.stdout)
    assert report["valid"] is False
    assert report["format"] == "flat"
    assert report["problem_count"] == 1
    assert report["problems"][0]["text"] == "bad.jsonl:2: record 1: field 'chosen': empty text"
    assert "Traceback" not in run.stderr


def test_token_statistics_of_chat_prompts_use_the_chat_template(write_jsonl, tmp_path):
    """A real HF tokenizer: the prompt is counted as the template renders it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "one two three four user assistant system".split()
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }} {{ m['content'] }} "
                         "{% endfor %}{% if add_generation_prompt %}assistant{% endif %}")
    records = [{"prompt": [{"role": "system", "content": "one"},
                           {"role": "user", "content": "two three"}],
                "chosen": [{"role": "assistant", "content": "four four"}],
                "rejected": [{"role": "assistant", "content": "one"}]}]
    report, _ = validate(write_jsonl("chat.jsonl", records), tokenizer=tok)
    # "system one user two three assistant" is 6 tokens; responses count their contents.
    assert (report.tokens["prompt"].max, report.tokens["chosen"].max,
            report.tokens["rejected"].max) == (6, 2, 1)


# ---------------------------------------------------------------------------------- unpaired

UNPAIRED = [
    {"prompt": "What is the capital of France?", "completion": "Paris.", "label": True},
    {"prompt": "What is the capital of France?", "completion": "Lyon.", "label": False},
    {"prompt": "Say 'thank you' in Japanese.", "completion": "ありがとう。", "label": True},
]


def test_unpaired_problems_name_line_record_and_field(write_jsonl):
    path = write_jsonl("kto.jsonl", [
        UNPAIRED[0],
        {"prompt": "Why?", "completion": "Because.", "label": "yes"},
        {"prompt": "How?", "label": False},
        {"prompt": "When?", "completion": "  ", "label": 0},
        {"prompt": "Who?", "completion": "Me.", "label": 2},
        {"prompt": "Where?", "completion": "Here.", "label": None},
        {"prompt": "What?", "completion": "That."},
    ])

    result = read_preferences(path)

    boolean = "a boolean (true or false; 1 and 0 are read as true and false)"
    assert result.format == "unpaired"
    assert [str(p) for p in result.problems] == [
        f"kto.jsonl:2: record 1: field 'label': expected {boolean}, found text 'yes'",
        "kto.jsonl:3: record 2: missing required field 'completion'",
        "kto.jsonl:4: record 3: field 'completion': empty text",
        f"kto.jsonl:5: record 4: field 'label': expected {boolean}, found a number (2)",
        f"kto.jsonl:6: record 5: field 'label': expected {boolean}, found null",
        "kto.jsonl:7: record 6: missing required field 'label'",
    ]
    assert [p.field for p in result.problems] == ["label", "completion", "completion", "label",
                                                  "label", "label"]


def test_unpaired_conversational_completion_must_be_assistant_messages(write_jsonl):
    path = write_jsonl("chat.jsonl", [
        {"prompt": [{"role": "user", "content": "Hi"}],
         "completion": [{"role": "assistant", "content": "Hello!"}], "label": True},
        {"prompt": [{"role": "user", "content": "Hi"}],
         "completion": [{"role": "user", "content": "Hello?"}], "label": False},
        {"prompt": [{"role": "user", "content": "Hi"}], "completion": [], "label": False},
    ])

    assert [str(p) for p in read_preferences(path).problems] == [
        "chat.jsonl:2: record 1: field 'completion[0].role': a response must be 'assistant' "
        "messages, found 'user'",
        "chat.jsonl:3: record 2: field 'completion': expected a non-empty list of "
        "{role, content} messages, found a list of 0 items",
    ]


def test_unpaired_report_counts_labels_duplicates_and_conflicts(write_jsonl):
    path = write_jsonl("kto.jsonl", [*UNPAIRED, UNPAIRED[2],
                                     {**UNPAIRED[0], "label": False}])

    report, dataset = validate(path)

    assert report.valid and report.kind == "unpaired" and report.format == "unpaired"
    assert (report.records, report.examples, report.pairs) == (5, 5, 0)
    assert (report.desirable, report.undesirable) == (3, 2)
    assert (report.duplicate_examples, report.conflicting_examples) == (1, 1)
    assert [str(w) for w in report.warnings] == [
        "kto.jsonl:4: record 3: duplicate example: same prompt, completion and label as "
        "record 2",
        "kto.jsonl:5: record 4: conflicting labels: same prompt and completion as record 0, "
        "which is labelled true",
    ]
    assert set(report.chars) == {"prompt", "completion"}
    assert report.chars["completion"].max == len("ありがとう。")
    assert len(dataset) == 5


def test_paired_report_has_no_examples(write_jsonl):
    report, _ = validate(write_jsonl("good.jsonl", GOOD))

    assert (report.kind, report.pairs, report.examples) == ("paired", 4, 0)


def test_unpaired_token_statistics(write_jsonl):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab={"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    path = write_jsonl("kto.jsonl", [{"prompt": "a a a", "completion": "a", "label": True},
                                     {"prompt": "a", "completion": "a a", "label": False}])

    report, _ = validate(path, tokenizer=tok)

    assert (report.tokens["prompt"].max, report.tokens["completion"].max) == (3, 2)


def test_load_preferences_refuses_unpaired_examples_naming_algo_kto(write_jsonl):
    with pytest.raises(DataError) as info:
        load_preferences(write_jsonl("kto.jsonl", UNPAIRED))

    assert info.value.exit_code == 3
    assert info.value.message == (
        "kto.jsonl: 3 unpaired examples (prompt, completion, label), but this needs "
        "preference pairs (prompt, chosen, rejected)")
    assert info.value.hints[0] == "train on unpaired examples with algo=kto"


def test_invalid_unpaired_data_hints_at_the_kto_sample(write_jsonl):
    with pytest.raises(DataError) as info:
        load_data(write_jsonl("kto.jsonl", [{"prompt": "p", "completion": "c", "label": "?"}]))

    assert info.value.hints == [UNPAIRED_SAMPLE_HINT]


def test_load_unpaired_splits_pairs_and_keeps_examples(write_jsonl):
    split = load_unpaired(write_jsonl("pairs.jsonl", GOOD))
    kept = load_unpaired(write_jsonl("kto.jsonl", UNPAIRED))

    assert (len(split), split.desirable, split.undesirable) == (8, 4, 4)
    assert split.table["completion"].to_pylist() == (
        [r["chosen"] for r in GOOD] + [r["rejected"] for r in GOOD])
    assert kept.table["completion"].to_pylist() == [r["completion"] for r in UNPAIRED]


def test_cli_validate_unpaired_prints_label_counts(write_jsonl, tmp_path):
    write_jsonl("kto.jsonl", UNPAIRED)

    run = _preftune("validate", "kto.jsonl", cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == ("kto.jsonl: unpaired (text) format, 3 records, 3 examples "
                        "(2 desirable, 1 undesirable)")
    assert "  conflicting labels: 0" in lines
    assert run.stdout.rstrip().endswith("valid")
