"""Write preference data in any format: canonical pairs → format records → a file; unpaired
examples → TRL's ``{prompt, completion, label}`` records → a file.

The container follows the file's suffix: ``.json`` (an indented array), ``.jsonl``,
``.parquet`` or ``.csv``. Files are written to a temporary name, synced and renamed, so a
failure never leaves half a file behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from preftune.data.records import Message, PreferenceDataset, UnpairedDataset
from preftune.data.transforms import unpair
from preftune.errors import DataError, UsageError
from preftune.fsutil import atomic_path

WRITABLE_FORMATS = ("pairs", "flat", "implicit", "conversational", "openai", "sharegpt")
CONTAINERS = (".json", ".jsonl", ".parquet", ".csv")
_SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system", "tool": "tool"}


def container_of(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise UsageError(f"cannot tell how to write {path}: unknown suffix {suffix or '(none)'}",
                         [f"name the file with one of {', '.join(CONTAINERS)}"])
    return suffix


def write_records(records: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write records to ``path`` in the container its suffix names; returns how many."""
    container = container_of(path)
    with atomic_path(path) as tmp:
        if container in (".parquet", ".csv"):
            return _write_columnar(list(records), tmp, container, Path(path).name)
        with tmp.open("w", encoding="utf-8") as f:
            return _write_json(records, f, array=container == ".json")


def _write_json(records: Iterable[dict[str, Any]], f: IO[str], array: bool) -> int:
    count = 0
    if array:
        f.write("[")
    for record in records:
        if array:
            f.write(",\n" if count else "\n")
            text = json.dumps(record, ensure_ascii=False, indent=2)
            f.write("  " + text.replace("\n", "\n  "))
        else:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    if array:
        f.write("\n]\n" if count else "]\n")
    return count


def _write_columnar(records: list[dict[str, Any]], tmp: Path, container: str, name: str) -> int:
    table = pa.Table.from_pylist(records)
    if container == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, tmp)
    else:
        import pyarrow.csv as pcsv

        nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
        if nested:
            raise UsageError(f"{name}: CSV cannot hold the lists in {', '.join(nested)}",
                             ["write .jsonl or .parquet for this format"])
        pcsv.write_csv(table, tmp)
    return table.num_rows


# ------------------------------------------------------------------------ pairs → records


def write_dataset(dataset: PreferenceDataset, path: str | os.PathLike[str], format: str) -> int:
    """Write every pair of ``dataset`` to ``path`` in ``format``; returns the record count."""
    if format not in WRITABLE_FORMATS:
        raise UsageError(f"cannot write format {format!r}",
                         [f"choose one of: {', '.join(WRITABLE_FORMATS)}"])
    return write_records(to_records(dataset, format), path)


def to_records(dataset: PreferenceDataset, format: str) -> Iterator[dict[str, Any]]:
    meta = dataset.metadata_columns
    rows = (row for batch in dataset.table.to_batches(max_chunksize=4096)
            for row in batch.to_pylist())
    if format == "pairs":
        yield from _pairs_records(rows, meta, dataset.source)
        return
    for row in rows:
        record = _ROW_WRITERS[format](row, dataset.source)
        record.update({k: row[k] for k in meta if row[k] is not None})
        yield record


def _messages(row: dict[str, Any]) -> tuple[list[Message], list[Message], list[Message]]:
    """The row's prompt and responses as messages, whatever mode it is in."""
    if isinstance(row["prompt"], list):
        return row["prompt"], row["chosen"], row["rejected"]
    prompt: list[Message] = [{"role": "user", "content": row["prompt"]}]
    if row["system"]:
        prompt.insert(0, {"role": "system", "content": row["system"]})
    return (prompt, [{"role": "assistant", "content": row["chosen"]}],
            [{"role": "assistant", "content": row["rejected"]}])


def _texts(row: dict[str, Any], source: str) -> tuple[str, str | None, str, str]:
    """The row as (prompt, system, chosen, rejected) text; only single-turn chats convert."""
    if not isinstance(row["prompt"], list):
        return row["prompt"], row["system"], row["chosen"], row["rejected"]
    prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
    system = None
    if prompt and prompt[0]["role"] == "system":
        system, prompt = prompt[0]["content"], prompt[1:]
    if len(prompt) != 1 or len(chosen) != 1 or len(rejected) != 1:
        raise DataError(
            f"{source}: record {row['record']}: a multi-turn conversation cannot be written "
            "as plain text", ["write it as conversational, openai or sharegpt instead"])
    return prompt[0]["content"], system, chosen[0]["content"], rejected[0]["content"]


def _flat(row: dict[str, Any], source: str) -> dict[str, Any]:
    prompt, system, chosen, rejected = _texts(row, source)
    record: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if system:
        record["system"] = system
    if row["sft_target"]:
        record["sft_target"] = row["sft_target"]
    return record


def _implicit(row: dict[str, Any], source: str) -> dict[str, Any]:
    if isinstance(row["prompt"], list):
        prompt, chosen, rejected = _messages(row)
        return {"chosen": prompt + chosen, "rejected": prompt + rejected}
    text = row["prompt"] if row["prompt"][-1:].isspace() else row["prompt"] + "\n"
    record: dict[str, Any] = {"chosen": text + row["chosen"], "rejected": text + row["rejected"]}
    if row["system"]:
        record["system"] = row["system"]
    return record


def _conversational(row: dict[str, Any], source: str) -> dict[str, Any]:
    prompt, chosen, rejected = _messages(row)
    record: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if row["sft_target"]:
        record["sft_target"] = row["sft_target"]
    return record


def _openai(row: dict[str, Any], source: str) -> dict[str, Any]:
    prompt, chosen, rejected = _messages(row)
    return {"input": {"messages": prompt}, "preferred_output": chosen,
            "non_preferred_output": rejected}


def _sharegpt(row: dict[str, Any], source: str) -> dict[str, Any]:
    prompt, chosen, rejected = _messages(row)

    def convert(msgs: list[Message]) -> list[dict[str, str]]:
        return [{"from": _SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in msgs]

    def response(msgs: list[Message]) -> Any:
        converted = convert(msgs)
        return converted[0] if len(converted) == 1 else converted

    return {"conversations": convert(prompt), "chosen": response(chosen),
            "rejected": response(rejected)}


_ROW_WRITERS = {"flat": _flat, "implicit": _implicit, "conversational": _conversational,
                "openai": _openai, "sharegpt": _sharegpt}


def _pairs_records(rows: Iterable[dict[str, Any]], meta: list[str],
                   source: str) -> Iterator[dict[str, Any]]:
    """Group consecutive pairs that share a prompt into one record of responses and indices."""
    current: dict[str, Any] | None = None
    key: Any = None
    for row in rows:
        prompt, system = row["prompt"], row["system"]
        if isinstance(prompt, list) and (len(row["chosen"]) != 1 or len(row["rejected"]) != 1):
            raise DataError(f"{source}: record {row['record']}: multi-message responses cannot "
                            "be written in the pairs format", ["write it as conversational"])
        row_key = (json.dumps(prompt), system, row["sft_target"])
        if current is None or row_key != key:
            if current is not None:
                yield current
            key = row_key
            current = {"prompt": prompt, "responses": [], "pairs": []}
            if system:
                current["system"] = system
            if row["sft_target"]:
                current["sft_target"] = row["sft_target"]
            current.update({k: row[k] for k in meta if row[k] is not None})
        responses: list[str] = current["responses"]
        indices = []
        for response in (row["chosen"], row["rejected"]):
            text = response[0]["content"] if isinstance(response, list) else response
            if text not in responses:
                responses.append(text)
            indices.append(responses.index(text))
        current["pairs"].append(indices)
    if current is not None:
        yield current



def dataset_from_samples(samples: Iterable[Any], all_pairs: bool) -> PreferenceDataset:
    """Canonical pairs from ``sample.SampleRecord``s.

    ``all_pairs`` ranks every response against every worse one (the pairs format, with the
    best response as ``sft_target``); otherwise each record gives one pair, best against a
    worse response that varies with the record.
    """
    from preftune.data.records import canonical_schema

    rows: list[dict[str, Any]] = []
    for i, s in enumerate(samples):
        n = len(s.responses)
        if all_pairs:
            index_pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
        else:
            index_pairs = [(0, 1 + i % (n - 1))]
        for a, b in index_pairs:
            rows.append({"record": i, "line": None, "prompt": s.prompt,
                         "chosen": s.responses[a], "rejected": s.responses[b],
                         "system": s.system, "sft_target": s.responses[0] if all_pairs else None,
                         "category": s.category})
    schema = canonical_schema(False).append(pa.field("category", pa.string()))
    table = pa.Table.from_pylist(rows, schema=schema)
    return PreferenceDataset(table, "pairs" if all_pairs else "flat", "sample", len(rows))


def unpaired_records(dataset: UnpairedDataset) -> Iterator[dict[str, Any]]:
    """Each example as TRL's unpaired format holds it, ``{prompt, completion, label}``, with
    its system prompt (text datasets) and metadata where set."""
    meta = dataset.metadata_columns
    for batch in dataset.table.to_batches(max_chunksize=4096):
        for row in batch.to_pylist():
            record = {"prompt": row["prompt"], "completion": row["completion"],
                      "label": row["label"]}
            if row["system"]:
                record["system"] = row["system"]
            record.update({k: row[k] for k in meta if row[k] is not None})
            yield record


def unpaired_from_samples(samples: Iterable[Any], num_examples: int,
                          seed: int) -> UnpairedDataset:
    """``num_examples`` unpaired examples from ``sample.SampleRecord``s: each record's pair
    (as ``dataset_from_samples`` gives it) split into a desirable and an undesirable example,
    then shuffled with ``seed`` so that neither label comes in a run and the two answers to a
    prompt are seldom neighbours (neighbours lend each other KL completions)."""
    examples = unpair(dataset_from_samples(samples, all_pairs=False))
    order = np.random.default_rng(seed).permutation(len(examples))[:num_examples]
    return examples.select(pa.array(order))
