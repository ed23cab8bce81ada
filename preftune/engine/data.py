"""Training data, from the config's sources to token rows: read, validate, normalise, subset,
split off evaluation data, tokenize.

The algorithms' data kind (``losses.table.data_kind``) decides the rows. Paired algorithms
get preference pairs; unpaired data given to them is a ``DataError``. Unpaired algorithms
(KTO) get examples: unpaired data as it is, pairs split into a desirable and an undesirable
example each, after subsetting and splitting so that ``n_examples`` and ``eval_split`` count
pairs. Their rows are laid out as pairs (see ``tokenize.tokenize_unpaired``) with a
``label`` column.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import torch

from preftune.config import TrainConfig
from preftune.data.formats import FieldNames
from preftune.data.records import PreferenceDataset, UnpairedDataset
from preftune.data.tokenize import (
    TokenizedExamples,
    TokenizedPairs,
    TokenizeStats,
    UnpairedStats,
    tokenize_pairs,
    tokenize_unpaired,
)
from preftune.data.transforms import normalize, split, unpair
from preftune.data.validate import load_data, unpaired_error
from preftune.errors import ConfigError
from preftune.losses.table import data_kind

# TRL's range for desirable_weight * n_desirable / (undesirable_weight * n_undesirable), from
# the KTO paper (Ethayarajh et al. 2024, Eq. 8 and the advice after it).
BALANCE_RANGE = (1.0, 4 / 3)

Dataset = PreferenceDataset | UnpairedDataset
Tokenized = TokenizedPairs | TokenizedExamples


@dataclass
class PreparedData:
    train: Tokenized  # TokenizedExamples for an unpaired algorithm
    eval: Tokenized | None
    source: str  # what the training data was called (a path, hf: spec or "<data>")
    fingerprint: str  # of the training pairs (or examples) as read, before tokenization


def prepare_data(cfg: TrainConfig, tokenizer: Any, train_data: Any = None,
                 eval_data: Any = None) -> PreparedData:
    """Everything the loop needs from the data; invalid data raises before any model loads."""
    source = train_data if train_data is not None else cfg.dataset
    if source is None:
        raise ConfigError("no training data", ["pass --dataset PATH (or dataset: in the config)"])
    train = read_data(cfg, source)
    evaluation = read_data(cfg, eval_data if eval_data is not None else cfg.eval_dataset) \
        if (eval_data is not None or cfg.eval_dataset) else None
    if cfg.n_examples is not None:
        train = train.select(list(range(min(cfg.n_examples, len(train)))))
    if evaluation is None and cfg.eval_split > 0:
        train, evaluation = split(train, cfg.eval_split, cfg.seed)
    name = source if isinstance(source, str) else train.source
    if data_kind(cfg.algorithms) == "unpaired":
        examples = as_unpaired(train, cfg.seed)
        tokenized = tokenize_examples(cfg, examples, tokenizer)
        warn_balance(cfg, tokenized.stats)
        return PreparedData(tokenized, None if evaluation is None else tokenize_examples(
            cfg, as_unpaired(evaluation, cfg.seed), tokenizer), name, fingerprint(examples))
    assert isinstance(train, PreferenceDataset)  # read_data refused unpaired data
    assert evaluation is None or isinstance(evaluation, PreferenceDataset)
    sft = cfg.algo == "sft"
    tokenized_train = tokenize_pairs(train, tokenizer, cfg.max_length, cfg.max_prompt_length,
                                     use_sft_target=sft)
    tokenized_eval = None if evaluation is None else tokenize_pairs(
        evaluation, tokenizer, cfg.max_length, cfg.max_prompt_length, use_sft_target=sft)
    return PreparedData(tokenized_train, tokenized_eval, name, fingerprint(train))


def read_data(cfg: TrainConfig, source: Any) -> Dataset:
    """Pairs or unpaired examples as read and normalised; unpaired data for a paired
    algorithm raises ``DataError``."""
    fields = FieldNames(cfg.prompt_field, cfg.chosen_field, cfg.rejected_field,
                        cfg.completion_field, cfg.label_field)
    dataset = load_data(source, cfg.dataset_format, fields)
    if isinstance(dataset, UnpairedDataset) and data_kind(cfg.algorithms) == "paired":
        raise unpaired_error(dataset, f"algo={cfg.algo_label}")
    return normalize(dataset, cfg.normalize)


def read(cfg: TrainConfig, source: Any) -> PreferenceDataset:
    """Preference pairs as read and normalised (what evaluation scores, whatever the
    algorithm); unpaired data raises ``DataError``."""
    dataset = read_data(cfg, source)
    if isinstance(dataset, UnpairedDataset):
        raise unpaired_error(dataset)
    return dataset


def as_unpaired(dataset: Dataset, seed: int) -> UnpairedDataset:
    """Examples in a seeded order: pairs split, then every example shuffled once.

    The batches (and the KL completions drawn within them) are cut from this order, and they
    stay together through training, so it must not be the file's: split pairs (and many
    files) hold every desirable example before every undesirable one, and a batch of one
    label gives KTO no signal (its KL baseline moves with the very rewards it is compared
    with).
    """
    examples = dataset if isinstance(dataset, UnpairedDataset) else unpair(dataset)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))
    return examples.select(order.tolist())


def tokenize_examples(cfg: TrainConfig, dataset: UnpairedDataset,
                      tokenizer: Any) -> TokenizedExamples:
    """Unpaired rows, their KL completions drawn within chunks of the run's batch size."""
    return tokenize_unpaired(dataset, tokenizer, cfg.max_length, cfg.max_prompt_length,
                             cfg.batch_size)


def warn_balance(cfg: TrainConfig, stats: UnpairedStats) -> None:
    """Warn, as TRL does, when the weighted desirable-to-undesirable ratio is out of range."""
    message = balance_advice(stats.desirable, stats.undesirable, cfg.desirable_weight,
                             cfg.undesirable_weight)
    if message is not None:
        warnings.warn(message, stacklevel=3)


def balance_advice(desirable: int, undesirable: int, desirable_weight: float,
                   undesirable_weight: float) -> str | None:
    """One line naming the counts, the ratio and the weights that bring it into
    ``BALANCE_RANGE``; None when it lies there.

    Unlike TRL, which only checks when the counts differ, the ratio is checked whatever they
    are (equal counts with unequal weights can be out of range too).
    """
    low, high = BALANCE_RANGE
    if desirable == 0 or undesirable == 0:
        present, missing = ("desirable", "undesirable") if desirable else \
            ("undesirable", "desirable")
        return (f"KTO class balance: all {desirable + undesirable} training examples are "
                f"{present} and none {missing}; KTO learns from both kinds")
    ratio = desirable_weight * desirable / (undesirable_weight * undesirable)
    if low <= ratio <= high:
        return None
    # Eq. 8's range solved for one weight, the other kept.
    want_desirable = undesirable_weight * undesirable / desirable
    want_undesirable = desirable_weight * desirable / undesirable
    return (f"KTO class balance: {desirable} desirable and {undesirable} undesirable training "
            f"examples with desirable_weight={desirable_weight:g} and "
            f"undesirable_weight={undesirable_weight:g} give desirable_weight * n_desirable / "
            f"(undesirable_weight * n_undesirable) = {ratio:.3g}, outside [1, 4/3]; set "
            f"desirable_weight in [{want_desirable * low:.3g}, {want_desirable * high:.3g}] or "
            f"undesirable_weight in [{want_undesirable / high:.3g}, {want_undesirable / low:.3g}]"
            " (not both)")


def fingerprint(dataset: Dataset) -> str:
    """A short content hash of the pairs (prompt, chosen, rejected, system, sft_target), or of
    the examples (prompt, completion, label, system)."""
    h = hashlib.sha256()
    names = ["prompt", "completion", "label", "system"] if isinstance(dataset, UnpairedDataset) \
        else ["prompt", "chosen", "rejected", "system", "sft_target"]
    for batch in dataset.table.select(names).to_batches(max_chunksize=65536):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()[:16]


def describe_stats(stats: TokenizeStats | UnpairedStats) -> str:
    if isinstance(stats, UnpairedStats):
        return (f"{stats.examples} examples ({stats.desirable} desirable, {stats.undesirable} "
                f"undesirable); {stats.truncated_prompts} prompts, "
                f"{stats.truncated_completions} completions and {stats.truncated_kl} KL "
                f"completions truncated; {stats.boundary_mismatches} boundary mismatches")
    return (f"{stats.pairs} pairs; {stats.truncated_prompts} prompts and "
            f"{stats.truncated_responses} responses truncated; {stats.dropped} dropped; "
            f"{stats.boundary_mismatches} boundary mismatches")
