"""Training data, from the config's sources to token rows: read, validate, normalise, subset,
split off evaluation pairs, tokenize.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from preftune.config import TrainConfig
from preftune.data.formats import FieldNames
from preftune.data.records import PreferenceDataset
from preftune.data.tokenize import TokenizedPairs, TokenizeStats, tokenize_pairs
from preftune.data.transforms import normalize, split
from preftune.data.validate import load_preferences
from preftune.errors import ConfigError


@dataclass
class PreparedData:
    train: TokenizedPairs
    eval: TokenizedPairs | None
    source: str  # what the training data was called (a path, hf: spec or "<data>")
    fingerprint: str  # of the training pairs as read, before tokenization


def prepare_data(cfg: TrainConfig, tokenizer: Any, train_data: Any = None,
                 eval_data: Any = None) -> PreparedData:
    """Everything the loop needs from the data; invalid data raises before any model loads."""
    source = train_data if train_data is not None else cfg.dataset
    if source is None:
        raise ConfigError("no training data", ["pass --dataset PATH (or dataset: in the config)"])
    train = read(cfg, source)
    evaluation = read(cfg, eval_data if eval_data is not None else cfg.eval_dataset) \
        if (eval_data is not None or cfg.eval_dataset) else None
    if cfg.n_examples is not None:
        train = train.select(list(range(min(cfg.n_examples, len(train)))))
    if evaluation is None and cfg.eval_split > 0:
        train, evaluation = split(train, cfg.eval_split, cfg.seed)
    sft = cfg.algo == "sft"
    tokenized_train = tokenize_pairs(train, tokenizer, cfg.max_length, cfg.max_prompt_length,
                                     use_sft_target=sft)
    tokenized_eval = None if evaluation is None else tokenize_pairs(
        evaluation, tokenizer, cfg.max_length, cfg.max_prompt_length, use_sft_target=sft)
    name = source if isinstance(source, str) else train.source
    return PreparedData(tokenized_train, tokenized_eval, name, fingerprint(train))


def read(cfg: TrainConfig, source: Any) -> PreferenceDataset:
    fields = FieldNames(cfg.prompt_field, cfg.chosen_field, cfg.rejected_field)
    return normalize(load_preferences(source, cfg.dataset_format, fields), cfg.normalize)


def fingerprint(dataset: PreferenceDataset) -> str:
    """A short content hash of the pairs (prompt, chosen, rejected, system, sft_target)."""
    h = hashlib.sha256()
    columns = dataset.table.select(["prompt", "chosen", "rejected", "system", "sft_target"])
    for batch in columns.to_batches(max_chunksize=65536):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()[:16]


def describe_stats(stats: TokenizeStats) -> str:
    return (f"{stats.pairs} pairs; {stats.truncated_prompts} prompts and "
            f"{stats.truncated_responses} responses truncated; {stats.dropped} dropped; "
            f"{stats.boundary_mismatches} boundary mismatches")
