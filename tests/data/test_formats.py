import json

import datasets
import pandas as pd
import pytest

from preftune.data.formats import FORMATS, FieldNames
from preftune.data.reader import read_preferences
from preftune.errors import UsageError


def _expected_pairs(records):
    """One expected row per index pair: (record, prompt, chosen, rejected, sft_target, category)."""
    out = []
    for k, rec in enumerate(records):
        for i, j in rec["pairs"]:
            out.append((k, rec["prompt"], rec["responses"][i], rec["responses"][j],
                        rec.get("sft_target"), rec["category"]))
    return out


def _as_tuples(rows):
    return [(r["record"], r["prompt"], r["chosen"], r["rejected"], r["sft_target"],
             r["category"]) for r in rows]


def _flat_expected(flat_rows, lines=None):
    return [
        {"record": i, "line": None if lines is None else lines[i], "prompt": r["prompt"],
         "chosen": r["chosen"], "rejected": r["rejected"], "system": None, "sft_target": None,
         "category": r["category"]}
        for i, r in enumerate(flat_rows)
    ]


# ------------------------------------------------------------------------------------- pairs


@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_pairs_in_an_indented_json_array(write_json, pairs_records, record_start_lines,
                                         ensure_ascii):
    path = write_json("prefs.json", pairs_records, ensure_ascii=ensure_ascii)
    assert ("caf\\u00e9" in path.read_text(encoding="utf-8")) is ensure_ascii

    result = read_preferences(path)

    assert result.format == "pairs"
    assert result.num_records == 3
    assert result.problems == [] and result.problem_count == 0
    rows = result.dataset.table.to_pylist()
    assert len(rows) == 6 == sum(len(r["pairs"]) for r in pairs_records)
    assert _as_tuples(rows) == _expected_pairs(pairs_records)
    assert rows[0]["chosen"] == "Coffee with an equal amount of hot milk."
    assert rows[1]["chosen"] == "Un café avec du lait chaud: coffee with steamed milk."
    assert rows[2]["chosen"] == "ありがとう and شكرا"
    starts = record_start_lines(path)
    assert [r["line"] for r in rows] == [starts[0]] * 2 + [starts[1]] * 3 + [starts[2]]
    assert result.dataset.metadata_columns == ["category"]
    assert result.dataset.conversational is False


def test_pairs_in_jsonl(write_jsonl, pairs_records):
    result = read_preferences(write_jsonl("prefs.jsonl", pairs_records))

    assert result.format == "pairs"
    assert result.num_records == 3
    rows = result.dataset.table.to_pylist()
    assert _as_tuples(rows) == _expected_pairs(pairs_records)
    assert [r["line"] for r in rows] == [1, 1, 2, 2, 2, 3]
    assert [r["sft_target"] for r in rows] == [
        pairs_records[0]["sft_target"]] * 2 + [None] * 3 + [pairs_records[2]["sft_target"]]
    assert {r["system"] for r in rows} == {None}


# -------------------------------------------------------------------------------------- flat


def test_flat_jsonl_written_by_datasets(tmp_path, flat_rows):
    path = tmp_path / "train.jsonl"
    datasets.Dataset.from_list(flat_rows).to_json(path)
    assert "\\u" in path.read_text(encoding="utf-8")  # datasets escapes non-ASCII

    result = read_preferences(path)

    assert result.format == "flat"
    assert result.num_records == 4
    assert result.dataset.table.to_pylist() == _flat_expected(flat_rows, [1, 2, 3, 4])
    assert result.dataset.metadata_columns == ["category"]


@pytest.mark.parametrize("writer", ["datasets", "pandas", "pandas-custom-index"])
def test_flat_parquet(tmp_path, flat_rows, writer):
    path = tmp_path / "train.parquet"
    if writer == "datasets":
        datasets.Dataset.from_list(flat_rows).to_parquet(path)
    else:
        df = pd.DataFrame(flat_rows)
        if writer == "pandas-custom-index":
            df.index = [10, 20, 30, 40]  # stored as a __index_level_0__ column
        df.to_parquet(path)

    result = read_preferences(path)

    assert result.format == "flat"
    assert result.dataset.table.to_pylist() == _flat_expected(flat_rows)
    assert result.dataset.metadata_columns == ["category"]


@pytest.mark.parametrize("index", [True, False])
def test_flat_csv_written_by_pandas(tmp_path, flat_rows, index):
    path = tmp_path / "train.csv"
    pd.DataFrame(flat_rows).to_csv(path, index=index)
    assert path.read_text(encoding="utf-8").startswith(",prompt" if index else "prompt")

    result = read_preferences(path)

    assert result.format == "flat"
    assert result.num_records == 4
    assert result.dataset.table.to_pylist() == _flat_expected(flat_rows)
    assert result.dataset.metadata_columns == ["category"]


def test_csv_prompt_of_digits_stays_text(tmp_path, read_ok):
    path = tmp_path / "numbers.csv"
    pd.DataFrame([
        {"prompt": "0042", "chosen": "42", "rejected": "forty-two", "id": "007"},
        {"prompt": "3.50", "chosen": "3.5", "rejected": "350", "id": "010"},
    ]).to_csv(path)

    rows = read_ok(path)

    assert [(r["prompt"], r["chosen"], r["rejected"], r["id"]) for r in rows] == [
        ("0042", "42", "forty-two", "007"), ("3.50", "3.5", "350", "010")]


def test_saved_dataset_directory(tmp_path, flat_rows):
    path = tmp_path / "saved"
    datasets.Dataset.from_list(flat_rows).save_to_disk(str(path))

    result = read_preferences(path)

    assert result.format == "flat"
    assert result.dataset.table.to_pylist() == _flat_expected(flat_rows)


def test_saved_dataset_dict_defaults_to_train_and_selects_a_split(tmp_path, flat_rows, read_ok):
    path = tmp_path / "saved_dict"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list(flat_rows[:3]),
        "test": datasets.Dataset.from_list(flat_rows[3:]),
    }).save_to_disk(str(path))

    train = read_ok(path)
    test = read_ok(f"{path}@test")

    assert [r["prompt"] for r in train] == [r["prompt"] for r in flat_rows[:3]]
    assert [r["prompt"] for r in test] == [flat_rows[3]["prompt"]]
    with pytest.raises(UsageError, match="no split 'validation'; the dataset has train, test"):
        read_preferences(f"{path}@validation")


def test_saved_dataset_view_keeps_its_order(tmp_path, flat_rows, read_ok):
    path = tmp_path / "reordered"
    datasets.Dataset.from_list(flat_rows).select([2, 0, 3, 1]).save_to_disk(str(path))

    rows = read_ok(path)

    assert [r["prompt"] for r in rows] == [flat_rows[i]["prompt"] for i in (2, 0, 3, 1)]


@pytest.mark.parametrize("name", ["qa.jsonl", "qa.json", "qa.csv"])
def test_custom_field_names(tmp_path, name):
    records = [
        {"question": "Where is the Louvre?", "good": "In Paris, on the Right Bank.",
         "bad": "In Lyon.", "source": "trivia"},
        {"question": "¿Cuál es la capital de Japón?", "good": "Tokio (東京).", "bad": "Kioto.",
         "source": "trivia-es"},
    ]
    path = tmp_path / name
    if name.endswith(".csv"):
        pd.DataFrame(records).to_csv(path, index=False)
    elif name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                        encoding="utf-8")
    else:
        path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")

    result = read_preferences(path, fields=FieldNames("question", "good", "bad"))

    assert result.format == "flat"
    rows = result.dataset.table.to_pylist()
    assert [(r["prompt"], r["chosen"], r["rejected"], r["source"]) for r in rows] == [
        (r["question"], r["good"], r["bad"], r["source"]) for r in records]
    assert result.dataset.metadata_columns == ["source"]
    # With the default names nothing matches, and the problem says so.
    default = read_preferences(path)
    assert default.dataset is None and default.format is None
    assert "the record has fields bad, good, question, source" in default.problems[0].message


# ---------------------------------------------------------------------------------- implicit


def test_implicit_text_with_a_shared_dialogue_prefix(write_jsonl):
    records = [
        {"chosen": "\n\nHuman: What is the capital of France?\n\nAssistant: Paris.",
         "rejected": "\n\nHuman: What is the capital of France?\n\nAssistant: I am not sure."},
        {"chosen": "\n\nHuman: How do I greet someone in Japanese?\n\nAssistant: Say "
                   "こんにちは (konnichiwa).\n\nHuman: And in Arabic?\n\nAssistant: مرحبا.",
         "rejected": "\n\nHuman: How do I greet someone in Japanese?\n\nAssistant: Say "
                     "こんにちは (konnichiwa).\n\nHuman: And in Arabic?\n\nAssistant: Hola."},
    ]
    result = read_preferences(write_jsonl("hh.jsonl", records))

    assert result.format == "implicit"
    rows = result.dataset.table.to_pylist()
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [
        ("\n\nHuman: What is the capital of France?\n\nAssistant: ", "Paris.",
         "I am not sure."),
        ("\n\nHuman: How do I greet someone in Japanese?\n\nAssistant: Say こんにちは "
         "(konnichiwa).\n\nHuman: And in Arabic?\n\nAssistant: ", "مرحبا.", "Hola."),
    ]
    assert [r["line"] for r in rows] == [1, 2]
    assert result.dataset.conversational is False


def test_implicit_conversational_with_shared_leading_messages(write_jsonl):
    shared = [{"role": "system", "content": "Answer in French."},
              {"role": "user", "content": "How are you?"}]
    records = [
        {"chosen": [*shared, {"role": "assistant", "content": "Très bien, merci !"}],
         "rejected": [*shared, {"role": "assistant", "content": "I am fine."}]},
        {"chosen": [{"role": "user", "content": "Name a café drink."},
                    {"role": "assistant", "content": "Café au lait."}],
         "rejected": [{"role": "user", "content": "Name a café drink."},
                      {"role": "assistant", "content": "Orange juice."}]},
    ]
    result = read_preferences(write_jsonl("implicit_chat.jsonl", records))

    assert result.format == "implicit"
    assert result.dataset.conversational is True
    rows = result.dataset.table.to_pylist()
    assert rows[0]["prompt"] == shared
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "Très bien, merci !"}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": "I am fine."}]
    assert rows[1]["prompt"] == [{"role": "user", "content": "Name a café drink."}]
    assert rows[1]["rejected"] == [{"role": "assistant", "content": "Orange juice."}]


# ---------------------------------------------------------------------------- conversational


def test_conversational_jsonl_with_message_lists(write_jsonl, conversational_records):
    result = read_preferences(write_jsonl("chat.jsonl", conversational_records))

    assert result.format == "conversational"
    assert result.dataset.conversational is True
    rows = result.dataset.table.to_pylist()
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [
        (r["prompt"], r["chosen"], r["rejected"]) for r in conversational_records]
    assert rows[0]["prompt"][0] == {"role": "system",
                                    "content": "You are a concise travel assistant."}
    assert [r["line"] for r in rows] == [1, 2]
    assert [r["system"] for r in rows] == [None, None]


def test_conversational_plain_string_answers_and_system_field(write_jsonl):
    records = [
        {"prompt": [{"role": "user", "content": "What is 7 × 6?"}],
         "chosen": "42.", "rejected": "48.", "system": "You are a maths tutor."},
        {"prompt": [{"role": "system", "content": "Réponds en français."},
                    {"role": "user", "content": "Quelle est la capitale du Japon ?"}],
         "chosen": "Tokyo.", "rejected": "Kyoto.", "system": "Ignored: the prompt has one."},
    ]
    result = read_preferences(write_jsonl("chat.jsonl", records))

    assert result.format == "conversational"
    rows = result.dataset.table.to_pylist()
    assert rows[0]["prompt"] == [{"role": "system", "content": "You are a maths tutor."},
                                 {"role": "user", "content": "What is 7 × 6?"}]
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "42."}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": "48."}]
    assert rows[1]["prompt"] == records[1]["prompt"]
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "Tokyo."}]


@pytest.mark.parametrize("container", ["save_to_disk", "parquet"])
def test_conversational_through_datasets(tmp_path, conversational_records, container):
    ds = datasets.Dataset.from_list(conversational_records)
    if container == "save_to_disk":
        path = tmp_path / "chat_saved"
        ds.save_to_disk(str(path))
    else:
        path = tmp_path / "chat.parquet"
        ds.to_parquet(path)

    result = read_preferences(path)

    assert result.format == "conversational"
    assert result.num_records == 2
    rows = result.dataset.table.to_pylist()
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [
        (r["prompt"], r["chosen"], r["rejected"]) for r in conversational_records]
    assert [r["line"] for r in rows] == [None, None]


# ------------------------------------------------------------------------- openai, sharegpt


def test_openai_preference_jsonl(write_jsonl):
    records = [
        {"input": {"messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello, can you tell me how cold San Francisco is "
                                        "today?"}],
            "tools": [], "parallel_tool_calls": True},
         "preferred_output": [{"role": "assistant", "content":
                               "Today in San Francisco, it is not quite cold as expected. "
                               "Morning clouds will give away to sunshine, with a high near "
                               "68°F (20°C) and a low around 57°F (14°C)."}],
         "non_preferred_output": [{"role": "assistant", "content":
                                   "It is not particularly cold in San Francisco today."}]},
        {"input": {"messages": [{"role": "user", "content": "Traduis « café » en japonais."}]},
         "preferred_output": [{"role": "assistant", "content": "コーヒー (kōhī)."}],
         "non_preferred_output": [{"role": "assistant", "content": "Tea."}]},
    ]
    result = read_preferences(write_jsonl("openai_dpo.jsonl", records))

    assert result.format == "openai"
    assert result.dataset.conversational is True
    rows = result.dataset.table.to_pylist()
    assert rows[0]["prompt"] == records[0]["input"]["messages"]
    assert rows[0]["chosen"] == records[0]["preferred_output"]
    assert rows[0]["rejected"] == records[0]["non_preferred_output"]
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "コーヒー (kōhī)."}]
    assert result.dataset.metadata_columns == []


def test_sharegpt_jsonl(write_jsonl):
    records = [
        {"conversations": [{"from": "system", "value": "You are a translator."},
                           {"from": "human", "value": "Translate 'thank you' into Arabic."}],
         "chosen": {"from": "gpt", "value": "شكرا"},
         "rejected": {"from": "gpt", "value": "Gracias"}},
        {"conversations": [{"from": "human", "value": "Hi!"},
                           {"from": "gpt", "value": "Hello! How can I help?"},
                           {"from": "human", "value": "日本語で挨拶して。"}],
         "chosen": {"from": "gpt", "value": "こんにちは!"},
         "rejected": {"from": "gpt", "value": "Hello."}},
    ]
    result = read_preferences(write_jsonl("sharegpt.jsonl", records))

    assert result.format == "sharegpt"
    rows = result.dataset.table.to_pylist()
    assert rows[0]["prompt"] == [{"role": "system", "content": "You are a translator."},
                                 {"role": "user", "content": "Translate 'thank you' into Arabic."}]
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "شكرا"}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": "Gracias"}]
    assert [m["role"] for m in rows[1]["prompt"]] == ["user", "assistant", "user"]
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "こんにちは!"}]


# ------------------------------------------------------------------------------- forcing


def test_forcing_a_format_overrides_detection(write_jsonl):
    # Flat data that also keeps the raw generations: detection sees 'responses' and says pairs.
    records = [{"prompt": "Name a French pastry.", "chosen": "Croissant.", "rejected": "Sushi.",
                "responses": ["Croissant.", "Sushi."]}]
    path = write_jsonl("kept_generations.jsonl", records)

    detected = read_preferences(path)
    forced = read_preferences(path, format="flat")

    assert detected.format == "pairs"
    assert [str(p) for p in detected.problems] == [
        "kept_generations.jsonl:1: record 0: missing required field 'pairs'"]
    assert forced.format == "flat" and forced.problems == []
    assert [(r["prompt"], r["chosen"], r["rejected"])
            for r in forced.dataset.table.to_pylist()] == [
        ("Name a French pastry.", "Croissant.", "Sushi.")]


def test_forcing_the_wrong_format_reports_its_missing_fields(write_jsonl, flat_rows):
    result = read_preferences(write_jsonl("flat.jsonl", flat_rows[:1]), format="sharegpt")

    assert result.format == "sharegpt"
    assert result.dataset is None
    assert [str(p) for p in result.problems] == [
        "flat.jsonl:1: record 0: missing required field 'conversations'"]


def test_unknown_format_name_is_a_usage_error(write_jsonl, flat_rows):
    path = write_jsonl("flat.jsonl", flat_rows)
    with pytest.raises(UsageError) as info:
        read_preferences(path, format="alpaca")
    assert info.value.message == "unknown format 'alpaca'"
    assert info.value.exit_code == 2
    assert all(fmt in info.value.hints[0] for fmt in FORMATS)


def test_missing_path_and_empty_hub_name_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="dataset not found"):
        read_preferences(tmp_path / "nope.jsonl")
    with pytest.raises(UsageError, match="empty dataset name in 'hf:@train'"):
        read_preferences("hf:@train")


# ------------------------------------------------------------------ fast path vs record path


def _flat_jsonl_text(records):
    """JSONL with a blank line in the middle, as concatenated files often have."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    return "\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n"


def test_fast_path_matches_record_path_on_valid_jsonl(write_raw, flat_rows, fast_path_results,
                                                      record_path, core_rows):
    records = [dict(r) for r in flat_rows]
    records[1]["system"] = "You are a Japanese teacher."
    records[2]["sft_target"] = "مرحبا means hello."
    records[3]["system"] = "  "  # a blank optional field means absent
    path = write_raw("train.jsonl", _flat_jsonl_text(records))

    fast = read_preferences(path)
    slow = record_path(path)

    assert fast_path_results and fast_path_results[-1] is not None  # the fast path answered
    assert fast.problems == [] and slow.problems == []
    assert (fast.format, fast.num_records) == (slow.format, slow.num_records) == ("flat", 4)
    assert core_rows(fast) == core_rows(slow)
    assert [r["line"] for r in core_rows(fast)] == [1, 2, 4, 5]
    assert [r["system"] for r in core_rows(fast)] == [None, "You are a Japanese teacher.",
                                                      None, None]
    assert fast.dataset.metadata_columns == slow.dataset.metadata_columns == ["category"]
    assert (fast.dataset.table["category"].to_pylist()
            == slow.dataset.table["category"].to_pylist())


@pytest.mark.parametrize("max_problems", [20, 3])
def test_fast_path_matches_record_path_on_empty_text(write_raw, flat_rows, fast_path_results,
                                                     record_path, problem_keys, max_problems):
    records = [dict(r) for r in flat_rows]
    records[0]["chosen"] = ""
    records[1]["rejected"] = "   \n"
    records[3]["prompt"] = "\t"
    records[3]["rejected"] = "\u3000"  # ideographic space
    records[3]["sft_target"] = ""  # optional: blank means absent, not a problem
    path = write_raw("blank.jsonl", _flat_jsonl_text(records))

    fast = read_preferences(path, max_problems=max_problems)
    slow = record_path(path, max_problems=max_problems)

    assert fast_path_results and fast_path_results[-1] is not None
    assert fast.dataset is None and slow.dataset is None
    assert fast.problem_count == slow.problem_count == 4
    assert problem_keys(fast) == problem_keys(slow)
    expected = [
        (0, 1, "chosen", "field 'chosen': empty text"),
        (1, 2, "rejected", "field 'rejected': empty text"),
        (3, 5, "prompt", "field 'prompt': empty text"),
        (3, 5, "rejected", "field 'rejected': empty text"),
    ]
    assert problem_keys(fast) == expected[:max_problems]
    assert [str(p) for p in fast.problems] == [str(p) for p in slow.problems]


def test_jsonl_and_json_array_give_the_same_pairs(write_jsonl, write_json, flat_rows, core_rows,
                                                  record_start_lines):
    jsonl = read_preferences(write_jsonl("train.jsonl", flat_rows))
    array = read_preferences(write_json("train.json", flat_rows))

    assert core_rows(jsonl, without=("line",)) == core_rows(array, without=("line",))
    assert [r["line"] for r in core_rows(array)] == record_start_lines(write_json(
        "again.json", flat_rows))


def test_fast_path_matches_record_path_on_csv(tmp_path, flat_rows, fast_path_results,
                                              record_path, problem_keys):
    records = [dict(r) for r in flat_rows]
    records[2]["chosen"] = "  "
    path = tmp_path / "train.csv"
    pd.DataFrame(records).to_csv(path)

    fast = read_preferences(path)
    slow = record_path(path)

    assert fast_path_results and fast_path_results[-1] is not None
    assert problem_keys(fast) == problem_keys(slow) == [
        (2, None, "chosen", "field 'chosen': empty text")]
    assert str(fast.problems[0]) == "train.csv: record 2: field 'chosen': empty text"


def test_fast_path_reports_two_objects_on_one_line_like_the_record_path(write_raw, flat_rows,
                                                                        record_path,
                                                                        problem_keys):
    lines = [json.dumps(r, ensure_ascii=False) for r in flat_rows]
    path = write_raw("joined.jsonl", f"{lines[0]}\n{lines[1]} {lines[2]}\n{lines[3]}\n")

    slow = record_path(path)
    fast = read_preferences(path)  # bug: ArrowInvalid (4 rows, 3 lines)

    assert problem_keys(slow) == [
        (1, 2, None, "invalid JSON: Extra data (each line must be one JSON object)")]
    assert slow.problems[0].column == len(lines[1]) + 2
    assert problem_keys(fast) == problem_keys(slow)
    assert fast.dataset is None


def test_fast_path_rejects_a_record_split_over_two_lines(write_raw, flat_rows, record_path,
                                                         problem_keys):
    lines = [json.dumps(r, ensure_ascii=False) for r in flat_rows]
    split = lines[1].replace(', "chosen"', ',\n "chosen"')
    path = write_raw("wrapped.jsonl", "\n".join([lines[0], split, lines[2], lines[3]]) + "\n")

    slow = record_path(path)
    fast = read_preferences(path)  # bug: accepted, and later records get shifted line numbers

    assert [(p.record, p.line) for p in slow.problems] == [(1, 2), (2, 3)]
    assert slow.dataset is None
    assert problem_keys(fast) == problem_keys(slow)
    assert fast.dataset is None


def test_metadata_columns_keep_the_source_order(write_json, write_jsonl):
    """The record path must not order metadata columns by hash (different on every run)."""
    meta = {"category": "food", "source": "crowd", "language": "fr", "difficulty": "easy",
            "annotator": "a17", "split_tag": "v2", "license": "cc-by", "domain": "cooking"}
    record = {"prompt": "Qu'est-ce qu'un café crème ?", "chosen": "Un espresso avec de la "
              "crème de lait.", "rejected": "Un thé.", **meta}

    array = read_preferences(write_json("meta.json", [record]))
    jsonl = read_preferences(write_jsonl("meta.jsonl", [record]))

    assert jsonl.dataset.metadata_columns == list(meta)
    assert array.dataset.metadata_columns == list(meta)


# ---------------------------------------------------------------------------------- unpaired

UNPAIRED = [
    {"prompt": "What is a café au lait?", "completion": "Coffee with hot milk.", "label": True,
     "category": "food"},
    {"prompt": "Say 'thank you' in Japanese.", "completion": "Merci.", "label": False,
     "category": "language"},
    {"prompt": "Boiling point of water at sea level?", "completion": "100 °C (212 °F).",
     "label": True, "category": "science"},
]
UNPAIRED_CHAT = [
    {"prompt": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say hello in Arabic."}],
     "completion": [{"role": "assistant", "content": "مرحبا"}], "label": True},
    {"prompt": [{"role": "user", "content": "2+2?"}],
     "completion": [{"role": "assistant", "content": "5"}], "label": False},
]


def _unpaired_expected(records, lines=None):
    return [
        {"record": i, "line": None if lines is None else lines[i], "prompt": r["prompt"],
         "completion": r["completion"], "label": r["label"], "system": None,
         **({"category": r["category"]} if "category" in r else {})}
        for i, r in enumerate(records)
    ]


def _write_unpaired(tmp_path, container, records):
    """``records`` in ``container``, as the tools people use write them; the source to read."""
    path = tmp_path / f"kto.{container}"
    if container == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                        encoding="utf-8")
    elif container == "json":
        path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    elif container == "csv":
        pd.DataFrame(records).to_csv(path, index=False)  # labels become True/False text
    elif container == "parquet":
        datasets.Dataset.from_list(records).to_parquet(str(path))
    elif container == "save_to_disk":
        path = tmp_path / "saved"
        datasets.Dataset.from_list(records).save_to_disk(str(path))
    elif container == "records":
        return records
    elif container == "hf_dataset":
        return datasets.Dataset.from_list(records)
    return path


@pytest.mark.parametrize("container", ["jsonl", "json", "csv", "parquet", "save_to_disk",
                                       "records", "hf_dataset"])
def test_unpaired_text_in_every_container(tmp_path, container):
    from preftune.data.reader import read_in_memory
    from preftune.data.records import UnpairedDataset

    source = _write_unpaired(tmp_path, container, UNPAIRED)
    in_memory = container in ("records", "hf_dataset")

    result = read_in_memory(source) if in_memory else read_preferences(source)

    assert result.problems == [], [str(p) for p in result.problems]
    assert result.format == "unpaired"
    assert isinstance(result.dataset, UnpairedDataset)
    lines = {"jsonl": [1, 2, 3], "json": [2, 8, 14]}.get(container)
    assert result.dataset.table.to_pylist() == _unpaired_expected(UNPAIRED, lines)
    assert (result.dataset.desirable, result.dataset.undesirable) == (2, 1)
    assert result.dataset.metadata_columns == ["category"]
    assert not result.dataset.conversational


@pytest.mark.parametrize("container", ["jsonl", "parquet", "save_to_disk", "records"])
def test_unpaired_conversational(tmp_path, container):
    from preftune.data.reader import read_in_memory

    source = _write_unpaired(tmp_path, container, UNPAIRED_CHAT)

    result = read_in_memory(source) if container == "records" else read_preferences(source)

    assert result.format == "unpaired"
    assert result.dataset.conversational
    rows = result.dataset.table.to_pylist()
    assert [(r["prompt"], r["completion"], r["label"]) for r in rows] == [
        (r["prompt"], r["completion"], r["label"]) for r in UNPAIRED_CHAT]


def test_unpaired_plain_string_completion_after_chat_prompt_and_system_field(write_jsonl):
    path = write_jsonl("chat.jsonl", [
        {"prompt": [{"role": "user", "content": "2+2?"}], "completion": "4", "label": 1,
         "system": "Be brief."}])

    rows = read_preferences(path).dataset.table.to_pylist()

    assert rows[0]["prompt"] == [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "2+2?"}]
    assert rows[0]["completion"] == [{"role": "assistant", "content": "4"}]
    assert rows[0]["label"] is True


@pytest.mark.parametrize(("written", "read"), [
    (True, True), (False, False), (1, True), (0, False), (1.0, True),
    ("true", True), ("False", False), (" TRUE ", True), ("1", True), ("0", False),
])
def test_unpaired_labels_are_booleans_or_0_1(write_jsonl, written, read):
    path = write_jsonl("labels.jsonl", [{"prompt": "p", "completion": "c", "label": written}])

    assert read_preferences(path).dataset.table["label"].to_pylist() == [read]


@pytest.mark.parametrize("name", ["qa.jsonl", "qa.csv"])
def test_unpaired_custom_field_names(tmp_path, name):
    records = [{"question": "Where is the Louvre?", "answer": "In Paris.", "good": True},
               {"question": "Capital of Japan?", "answer": "Kyoto.", "good": False}]
    path = tmp_path / name
    if name.endswith(".csv"):
        pd.DataFrame(records).to_csv(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    result = read_preferences(path, fields=FieldNames("question", completion="answer",
                                                      label="good"))

    assert result.format == "unpaired"
    assert [(r["prompt"], r["completion"], r["label"]) for r in
            result.dataset.table.to_pylist()] == [
        ("Where is the Louvre?", "In Paris.", True), ("Capital of Japan?", "Kyoto.", False)]
    assert result.dataset.metadata_columns == []


def test_pairs_with_a_label_column_stay_pairs(write_jsonl):
    path = write_jsonl("d.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r",
                                    "label": "math"}])

    result = read_preferences(path)

    assert result.format == "flat"
    assert result.dataset.table["label"].to_pylist() == ["math"]


def test_forcing_unpaired_on_pairs_reports_its_missing_fields(write_jsonl, flat_rows):
    path = write_jsonl("d.jsonl", flat_rows[:1])

    result = read_preferences(path, format="unpaired")

    assert [str(p) for p in result.problems] == [
        "d.jsonl:1: record 0: missing required field 'completion'",
        "d.jsonl:1: record 0: missing required field 'label'"]
