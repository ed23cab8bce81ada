import json

from preftune.data.reader import read_preferences
from preftune.data.records import PreferencePair, Problem


def test_iterating_gives_pairs_with_metadata(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away.", "system": "Be kind.",
             "category": "chat"},
            {"prompt": "2+2?", "chosen": "4", "rejected": "5", "category": "math"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = read_preferences(path).dataset
    pairs = list(dataset)
    assert pairs[0] == PreferencePair("Hi?", "Hello!", "Go away.", system="Be kind.",
                                      metadata={"category": "chat"})
    assert not pairs[1].conversational and pairs[1].system is None
    hf = dataset.to_hf()
    assert hf.num_rows == 2
    assert hf[1]["chosen"] == "4" and hf[1]["category"] == "math"


def test_conversational_pairs_and_selection(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": f"a{i}",
             "rejected": f"b{i}"} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = read_preferences(path).dataset
    picked = list(dataset.select([2, 0]))
    assert [p.prompt for p in picked] == [[{"role": "user", "content": "q2"}],
                                          [{"role": "user", "content": "q0"}]]
    assert picked[0].conversational
    assert picked[0].chosen == [{"role": "assistant", "content": "a2"}]


def test_problem_reads_like_a_compiler_message():
    problem = Problem("field 'chosen': empty text", file="d.jsonl", record=3, line=4,
                      field="chosen")
    assert str(problem) == "d.jsonl:4: record 3: field 'chosen': empty text"
    assert str(Problem("file is empty", file="e.json")) == "e.json: file is empty"
    assert Problem("x", file="f.json", line=2, column=7).to_dict() == {
        "message": "x", "file": "f.json", "line": 2, "column": 7, "text": "f.json:2:7: x"}
