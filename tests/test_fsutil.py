import json
import os
import stat

import pytest

from preftune.fsutil import (
    append_jsonl,
    atomic_dir,
    atomic_path,
    read_jsonl,
    repair_jsonl,
    write_json,
)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_are_readable_by_others_as_the_umask_allows(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f.txt").write_text("hi")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.json") == 0o644
    assert _mode(tmp_path / "d") == 0o755


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_torn_last_jsonl_line_is_ignored(tmp_path):
    path = tmp_path / "m.jsonl"
    append_jsonl(path, {"step": 1})
    with path.open("a") as f:
        f.write('{"step": 2, "lo')
    assert read_jsonl(path) == [{"step": 1}]


def test_a_bad_line_in_the_middle_hides_none_of_the_rows_after_it(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"step": 1}\n{"step": 2, "lo{"step": 3}\n\xff\x00\n{"step": 4}\n')
    assert read_jsonl(path) == [{"step": 1}, {"step": 4}]


@pytest.mark.parametrize(("content", "repaired"), [
    (b'{"step": 1}\n{"step": 2, "lo', b'{"step": 1}\n'),  # torn mid-row
    (b'{"step": 1}\n\x00\x00\x00\x00', b'{"step": 1}\n'),  # zeros where data never landed
    (b'{"step": 1}\n{"step": 2, "lo\n', b'{"step": 1}\n'),  # not JSON, newline or not
    (b'{"step": 1}\n{"step": 2}', b'{"step": 1}\n{"step": 2}\n'),  # only the newline lost
    (b'{"step": 2, "lo', b""),  # the only line
])
def test_repair_cuts_a_torn_last_line_so_the_next_append_is_read_back(tmp_path, content,
                                                                        repaired):
    path = tmp_path / "m.jsonl"
    path.write_bytes(content)
    assert repair_jsonl(path)
    assert path.read_bytes() == repaired
    append_jsonl(path, {"step": 9})
    assert read_jsonl(path)[-1] == {"step": 9}


@pytest.mark.parametrize("content", [b"", b'{"step": 1}\n', b'{"step": 1}\n\n'])
def test_repair_leaves_a_whole_file_alone(tmp_path, content):
    path = tmp_path / "m.jsonl"
    path.write_bytes(content)
    assert not repair_jsonl(path)
    assert path.read_bytes() == content
    assert not repair_jsonl(tmp_path / "missing.jsonl")


def test_repair_finds_the_last_line_across_read_blocks(tmp_path):
    path = tmp_path / "m.jsonl"
    rows = [{"step": i, "text": "x" * 5000} for i in range(40)]  # 200 KB: several blocks
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(body + b'{"step": 40, "text": "' + b"x" * 90_000)  # a torn 90 KB line
    assert repair_jsonl(path)
    assert path.read_bytes() == body
