"""Dataset-to-dataset transforms: text normalisation, train/eval split, unpairing, category
balancing.

All work column-wise on the Arrow table and are deterministic for a seed. Normalising and
splitting take unpaired examples as well as pairs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from preftune.data.records import PreferenceDataset, UnpairedDataset
from preftune.errors import UsageError

NORMALIZERS = ("nfkc", "arabic")

# Arabic: harakat and related marks (U+064B..U+065F), superscript alef (U+0670), tatweel.
_ARABIC_MARKS = "[\u064b-\u065f\u0670\u0640]"
# Alef with hamza above/below, madda, wasla → bare alef.
_ARABIC_ALEFS = "[\u0622\u0623\u0625\u0671]"
_TEXT_COLUMNS = ("prompt", "chosen", "rejected", "completion", "system", "sft_target")
# Pairs are unpaired in blocks of this many, chosen ones first: TRL unpairs with a batched
# ``datasets.map`` whose default batch size this is, and the same order gives the same KL rows.
_UNPAIR_BLOCK = 1000

AnyDataset = TypeVar("AnyDataset", bound=PreferenceDataset | UnpairedDataset)


def normalize(dataset: AnyDataset, kinds: Sequence[str]) -> AnyDataset:
    """Apply text normalisations (``nfkc``, ``arabic``) to every text and message content."""
    unknown = [k for k in kinds if k not in NORMALIZERS]
    if unknown:
        raise UsageError(f"unknown normalization {unknown[0]!r}",
                         [f"choose from: {', '.join(NORMALIZERS)}"])
    if not kinds:
        return dataset
    table = dataset.table
    for name in _TEXT_COLUMNS:
        if name not in table.column_names:
            continue
        column = table[name].combine_chunks()
        i = table.column_names.index(name)
        table = table.set_column(i, name, _map_text(column, lambda a: normalize_text(a, kinds)))
    return type(dataset)(table, dataset.format, dataset.source, dataset.num_records)


def normalize_text(texts: pa.Array, kinds: Sequence[str]) -> pa.Array:
    """Normalise a string array; order is NFKC first, then the Arabic rules."""
    if "nfkc" in kinds:
        texts = pc.utf8_normalize(texts, "NFKC")
    if "arabic" in kinds:
        texts = pc.replace_substring_regex(texts, _ARABIC_MARKS, "")
        texts = pc.replace_substring_regex(texts, _ARABIC_ALEFS, "\u0627")
    return texts


def _map_text(column: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """Apply ``fn`` to a string column, or to the ``content`` of a message-list column."""
    if not pa.types.is_list(column.type):
        return fn(column)
    messages = column.values  # struct<role, content>, flattened over rows
    content = fn(messages.field("content"))
    rebuilt = pa.StructArray.from_arrays([messages.field("role"), content],
                                         names=["role", "content"])
    return pa.ListArray.from_arrays(column.offsets, rebuilt, mask=column.is_null())


# ------------------------------------------------------------------------------------ split


def split(dataset: AnyDataset, eval_fraction: float,
          seed: int = 0) -> tuple[AnyDataset, AnyDataset]:
    """Deterministic train/eval split that keeps all pairs (or examples) of one prompt on the
    same side.

    Keeping prompts together stops the evaluation from scoring prompts seen in training.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise UsageError(f"eval fraction must be between 0 and 1, got {eval_fraction}",
                         ["for example: --eval-fraction 0.1"])
    groups = _prompt_groups(dataset)  # (N,) group id of each pair
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    order = np.random.default_rng(seed).permutation(n_groups)
    sizes = np.bincount(groups, minlength=n_groups)
    target = eval_fraction * len(groups)
    # Take shuffled prompt groups until the eval side holds the target share of pairs.
    cumulative = np.cumsum(sizes[order])
    n_eval_groups = int(np.searchsorted(cumulative, target, side="left")) + 1
    n_eval_groups = min(max(n_eval_groups, 1), n_groups - 1) if n_groups > 1 else 0
    is_eval_group = np.zeros(n_groups, dtype=bool)
    is_eval_group[order[:n_eval_groups]] = True
    is_eval = is_eval_group[groups]
    return (_take(dataset, np.flatnonzero(~is_eval)), _take(dataset, np.flatnonzero(is_eval)))


def _take(dataset: AnyDataset, rows: np.ndarray) -> AnyDataset:
    return type(dataset)(dataset.table.take(pa.array(rows)), dataset.format, dataset.source,
                         dataset.num_records)


def _prompt_groups(dataset: PreferenceDataset | UnpairedDataset) -> np.ndarray:
    column = dataset.table["prompt"]
    if pa.types.is_list(column.type):
        keys = pa.array([json.dumps(v, sort_keys=True) for v in column.to_pylist()])
    else:
        keys = column.combine_chunks()
    encoded = pc.dictionary_encode(keys)
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)


# --------------------------------------------------------------------------------- unpair


def unpair(dataset: PreferenceDataset) -> UnpairedDataset:
    """Each pair as two examples, (prompt, chosen, true) and (prompt, rejected, false), as
    TRL's ``unpair_preference_dataset`` gives them.

    The order is TRL's too: per block of 1,000 pairs, the chosen examples, then the rejected
    ones; so examples that are neighbours (and lend each other KL completions) answer
    different prompts. Both keep the pair's record, line, system and metadata columns;
    ``sft_target`` is a pairs-only field and is dropped.
    """
    table = dataset.table
    meta = dataset.metadata_columns
    parts = []
    # An empty dataset still goes round once, so that the result has the right column types.
    for start in range(0, max(table.num_rows, 1), _UNPAIR_BLOCK):
        block = table.slice(start, _UNPAIR_BLOCK)
        for response, label in (("chosen", True), ("rejected", False)):
            columns = {"record": block["record"], "line": block["line"],
                       "prompt": block["prompt"], "completion": block[response],
                       "label": pa.array([label] * block.num_rows, type=pa.bool_()),
                       "system": block["system"]}
            parts.append(pa.table({**columns, **{name: block[name] for name in meta}}))
    return UnpairedDataset(pa.concat_tables(parts), dataset.format, dataset.source,
                           dataset.num_records)


# ---------------------------------------------------------------------------------- balance


@dataclass(frozen=True)
class BalanceSummary:
    before: dict[str, int]
    after: dict[str, int]
    oversampled: dict[str, int]  # extra copies drawn, per category (resample mode only)


def parse_targets(text: str) -> dict[str, float]:
    """``"msa=0.3,egyptian=0.7"`` → shares that must sum to 1."""
    targets: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.rpartition("=")
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not sep or not name or not 0.0 <= share <= 1.0:
            raise UsageError(f"cannot read target {part!r}: expected CATEGORY=SHARE with a "
                             "share between 0 and 1", ["for example: --target a=0.3,b=0.7"])
        targets[name] = share
    total = sum(targets.values())
    if not targets or abs(total - 1.0) > 1e-6:
        raise UsageError(f"target shares must sum to 1, they sum to {total:g}",
                         ["for example: --target a=0.3,b=0.7"])
    return targets


def balance(dataset: PreferenceDataset, column: str, targets: dict[str, float],
            seed: int = 0, size: int | None = None,
            mode: str = "downsample") -> tuple[PreferenceDataset, BalanceSummary]:
    """Resample ``dataset`` so that ``column`` follows ``targets``.

    ``downsample`` (default) draws without replacement and picks the largest size that the
    scarcest category allows, so no pair is repeated. ``resample`` reaches ``size`` (default:
    the current size), repeating pairs of categories that are short.
    """
    if column not in dataset.table.column_names:
        raise UsageError(f"no column {column!r} to balance by",
                         [f"columns: {', '.join(dataset.metadata_columns) or 'none'}"])
    values = [None if v is None else str(v) for v in dataset.table[column].to_pylist()]
    before = Counter(v for v in values if v is not None)
    missing = [c for c, share in targets.items() if share > 0 and before[c] == 0]
    if missing:
        raise UsageError(f"category {missing[0]!r} has no pairs in column {column!r}",
                         [f"categories present: {', '.join(sorted(before))}"])
    rows_by_category: dict[str, list[int]] = {c: [] for c in targets}
    for i, v in enumerate(values):
        if v in rows_by_category:
            rows_by_category[v].append(i)
    if mode == "downsample":
        limit = min(before[c] / share for c, share in targets.items() if share > 0)
        total = int(limit) if size is None else min(size, int(limit))
    elif mode == "resample":
        total = size if size is not None else len(values)
    else:
        raise UsageError(f"unknown balance mode {mode!r}", ["choose downsample or resample"])
    counts = _apportion(targets, total)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    oversampled: dict[str, int] = {}
    for category, n in counts.items():
        rows = np.asarray(rows_by_category[category], dtype=np.int64)
        if n <= len(rows):
            chosen.extend(rng.choice(rows, size=n, replace=False).tolist())
        else:
            extra = n - len(rows)
            chosen.extend(rows.tolist())
            chosen.extend(rng.choice(rows, size=extra, replace=True).tolist())
            oversampled[category] = extra
    order = rng.permutation(len(chosen))
    selected = dataset.select(pa.array(np.asarray(chosen, dtype=np.int64)[order]))
    return selected, BalanceSummary(dict(before), counts, oversampled)


def _apportion(targets: dict[str, float], total: int) -> dict[str, int]:
    """Integer counts per category summing to ``total`` (largest remainders)."""
    exact = {c: share * total for c, share in targets.items()}
    counts = {c: int(v) for c, v in exact.items()}
    left = total - sum(counts.values())
    for c in sorted(exact, key=lambda c: exact[c] - counts[c], reverse=True)[:left]:
        counts[c] += 1
    return counts
