"""Fixtures for the reader and validator tests: realistic records and file writers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from preftune.data.reader import ReadResult

CORE = ("record", "line", "prompt", "chosen", "rejected", "system", "sft_target")


# ------------------------------------------------------------------------------- writers


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    """Write records one JSON object per line, the way most scripts do."""

    def write(name: str, records: list[Any], ensure_ascii: bool = False) -> Path:
        path = tmp_path / name
        with path.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=ensure_ascii) + "\n")
        return path

    return write


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[..., Path]:
    """Write records as one pretty-printed JSON array with ``json.dump``."""

    def write(name: str, records: Any, indent: int | None = 2,
              ensure_ascii: bool = False) -> Path:
        path = tmp_path / name
        with path.open("w", encoding="utf-8") as f:
            json.dump(records, f, indent=indent, ensure_ascii=ensure_ascii)
        return path

    return write


@pytest.fixture
def write_raw(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """Write exact text (UTF-8) or bytes, for malformed files."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return write


# --------------------------------------------------------------------------------- helpers


def _rows(result: ReadResult) -> list[dict[str, Any]]:
    assert result.dataset is not None, [str(p) for p in result.problems]
    return result.dataset.table.to_pylist()


@pytest.fixture
def record_start_lines() -> Callable[[Path], list[int]]:
    """1-based lines where the records of a ``json.dump(..., indent=2)`` array start."""

    def starts(path: Path) -> list[int]:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [i for i, line in enumerate(lines, start=1) if line == "  {"]

    return starts


@pytest.fixture
def core_rows() -> Callable[..., list[dict[str, Any]]]:
    """The canonical columns of a valid result's rows, optionally without some of them."""

    def select(result: ReadResult, without: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        keep = [c for c in CORE if c not in without]
        return [{k: row[k] for k in keep} for row in _rows(result)]

    return select


@pytest.fixture
def problem_keys() -> Callable[[ReadResult], list[tuple[Any, ...]]]:
    """(record, line, field, message) of each problem kept in a result."""

    def keys(result: ReadResult) -> list[tuple[Any, ...]]:
        return [(p.record, p.line, p.field, p.message) for p in result.problems]

    return keys


@pytest.fixture
def read_ok() -> Callable[..., list[dict[str, Any]]]:
    """Read a source that must be valid; return its rows."""
    from preftune.data.reader import read_preferences

    def read(source: Any, **kwargs: Any) -> list[dict[str, Any]]:
        result = read_preferences(source, **kwargs)
        assert result.problems == [] and result.problem_count == 0, \
            [str(p) for p in result.problems]
        return _rows(result)

    return read


# ------------------------------------------------------------------------------ test data


@pytest.fixture
def flat_rows() -> list[dict[str, Any]]:
    """Flat text preference rows with a category and non-ASCII text."""
    return [
        {"prompt": "What is a café au lait?",
         "chosen": "Coffee with hot milk, usually in equal parts.",
         "rejected": "A type of tea from Japan.", "category": "food"},
        {"prompt": "How do you say 'good morning' in Japanese?",
         "chosen": "おはようございます (ohayō gozaimasu).",
         "rejected": "日本語 means 'good morning'.", "category": "language"},
        {"prompt": "Translate 'hello' into Arabic.", "chosen": "مرحبا (marhaban).",
         "rejected": "Hola.", "category": "language"},
        {"prompt": "Summarise: The meeting moved from Monday to Wednesday at 10am.",
         "chosen": "The meeting is now on Wednesday at 10am.",
         "rejected": "There is a meeting.", "category": "summarisation"},
    ]


@pytest.fixture
def pairs_records() -> list[dict[str, Any]]:
    """Records in the pairs format: several ranked responses per prompt."""
    return [
        {"prompt": "Explain what a café au lait is.",
         "responses": ["Coffee with an equal amount of hot milk.",
                       "It is a kind of green tea.",
                       "Un café avec du lait chaud: coffee with steamed milk."],
         "pairs": [[0, 1], [2, 1]],
         "sft_target": "A café au lait is coffee with hot milk, popular in France.",
         "category": "food"},
        {"prompt": "Write 'thank you' in Japanese and Arabic.",
         "responses": ["ありがとう and شكرا", "Merci and Danke", "ありがとう only"],
         "pairs": [[0, 1], [0, 2], [2, 1]],
         "category": "language"},
        {"prompt": "What is the boiling point of water at sea level?",
         "responses": ["100 °C (212 °F).", "50 °C."],
         "pairs": [[0, 1]],
         "sft_target": "Water boils at 100 °C (212 °F) at sea level.",
         "category": "science"},
    ]


@pytest.fixture
def conversational_records() -> list[dict[str, Any]]:
    """Conversational rows: system messages, multi-turn prompts, message-list answers."""
    return [
        {"prompt": [{"role": "system", "content": "You are a concise travel assistant."},
                    {"role": "user", "content": "Where can I get a good café crème in Paris?"}],
         "chosen": [{"role": "assistant", "content": "Try Café de Flore in Saint-Germain."}],
         "rejected": [{"role": "assistant", "content": "Paris has no cafés."}]},
        {"prompt": [{"role": "user", "content": "Say hello in Japanese."},
                    {"role": "assistant", "content": "こんにちは"},
                    {"role": "user", "content": "And in Arabic?"}],
         "chosen": [{"role": "assistant", "content": "مرحبا"}],
         "rejected": [{"role": "assistant", "content": "Bonjour"}]},
    ]


@pytest.fixture
def fast_path_results(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What each call of the vectorised flat reader returned (None: it fell back)."""
    from preftune.data import reader

    results: list[Any] = []
    real = reader._fast_flat

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        results.append(result)
        return result

    monkeypatch.setattr(reader, "_fast_flat", spy)
    return results


@pytest.fixture
def record_path() -> Callable[..., ReadResult]:
    """Read a flat source record by record, the path the vectorised reader must agree with."""
    from preftune.data.formats import FieldNames
    from preftune.data.reader import _parse_all
    from preftune.data.sources import iter_records, iter_table_records, read_table, resolve_source

    def read(source: Any, fields: FieldNames | None = None,
             max_problems: int = 20) -> ReadResult:
        src = resolve_source(source)
        problems: list[Any] = []
        if src.kind in ("json", "jsonl"):
            records = iter_records(src, problems)
        else:
            records = iter_table_records(read_table(src))
        return _parse_all(src, records, problems, "flat", False, fields or FieldNames(),
                          max_problems)

    return read
