"""An environment over the rows of a dataset: one item per row, scored by configured rewards.

``dataset_name`` is one of:

* ``sample:N`` — N prompts from preftune's own sample generator
  (``preftune.data.sample.iter_samples(N, seed or 0)``), for runs with nothing downloaded.
  Each row has ``prompt``, ``answer`` (the generator's best response), ``category``.
* a local file (JSONL, JSON array, parquet, CSV) or a ``save_to_disk`` directory;
* otherwise a Hugging Face hub id, loaded with ``datasets.load_dataset(name, dataset_config,
  split=split)``.

``split`` takes the hub's slicing, ``train[:100]``, ``train[10:20]``, ``test[-5%:]``, for every
kind of source; a single local file (and ``sample:N``) has one split, ``train``.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from preftune.errors import ConfigError, DataError, MissingError
from preftune.graders.items import chat_messages, messages_problem
from preftune.rl.envs.base import EnvConfig, Environment, Item
from preftune.rl.rewards import build_rewards


class DatasetEnvConfig(EnvConfig):
    """An ``EnvConfig`` plus where the items come from and how they are scored."""

    dataset_name: str
    dataset_config: str | None = None
    split: str = "train"
    eval_split: str | None = None
    eval_dataset_name: str | None = Field(None, description="where eval_split is read from "
                                          "(default: dataset_name), e.g. a held-out file")
    epochs: int = Field(1, ge=1, description="passes over the training rows (each pass "
                        "shuffled anew when seed is set)")
    prompt_field: str = "prompt"
    messages_field: str | None = Field(None, description="a field holding the chat prompt as "
                                       "[{role, content}] (OpenAI's RFT items: messages); "
                                       "needs use_chat, and replaces prompt_field")
    answer_field: str = "answer"
    system_prompt: str | None = None
    reward_functions: list[str | dict[str, Any]] = Field(min_length=1)
    seed: int | None = Field(None, description="shuffle the training rows with this seed")


def parse_config(data: Mapping[str, Any], where: str) -> DatasetEnvConfig:
    """Validate a config mapping; ConfigError names each bad field, its value and ``where``."""
    try:
        return DatasetEnvConfig.model_validate(dict(data))
    except ValidationError as e:
        lines = []
        for error in e.errors():
            name = ".".join(str(part) for part in error["loc"]) or "(config)"
            if error["type"] == "extra_forbidden":
                lines.append(f"unknown key {name!r}")
            elif error["type"] == "missing":
                lines.append(f"{name}: required, not set")
            else:
                lines.append(f"{name}: {error['msg']} (got {error.get('input')!r})")
        raise ConfigError(f"{where}: invalid environment config: {lines[0]}",
                          [f"the keys are: {', '.join(DatasetEnvConfig.model_fields)}"],
                          lines[1:]) from None


class DatasetEnvironment(Environment):
    """One item per dataset row, in file order or shuffled with ``seed``; one pass."""

    def __init__(self, config: DatasetEnvConfig, tokenizer: Any = None) -> None:
        if config.messages_field is not None and not config.use_chat:
            raise ConfigError(f"messages_field {config.messages_field!r} needs use_chat: true",
                              ["a conversation is sampled through /v1/chat/completions"])
        rewards = build_rewards(config.reward_functions, config.answer_field)
        super().__init__(config, rewards, tokenizer)
        self.dataset_config = config
        if config.eval_every_steps is not None and config.eval_split is None:
            raise ConfigError("eval_every_steps needs eval_split, and the config sets none",
                              ["e.g. eval_split: test, or train[-50:] to hold out rows"])
        rows = load_rows(config.dataset_name, config.dataset_config, config.split, config.seed)
        self._check_prompts(rows, config.split)
        self._rows = _passes(rows, config.epochs, config.seed)
        self._lock = threading.Lock()

    def next_item(self) -> Item | None:
        with self._lock:
            row = next(self._rows, None)
        return None if row is None else self._item(row)

    def eval_items(self) -> Iterator[Item]:
        cfg = self.dataset_config
        if cfg.eval_split is None:
            raise ConfigError("evaluate needs eval_split, and the config sets none",
                              ["e.g. eval_split: test, or train[-50:] to hold out rows"])
        rows = load_rows(cfg.eval_dataset_name or cfg.dataset_name, cfg.dataset_config,
                         cfg.eval_split, cfg.seed)
        self._check_prompts(rows, cfg.eval_split)
        return (self._item(row) for row in rows)

    def _item(self, row: Mapping[str, Any]) -> Item:
        cfg = self.dataset_config
        if cfg.messages_field is None:
            return Item(str(row[cfg.prompt_field]), row, cfg.system_prompt)
        messages = tuple(chat_messages(row[cfg.messages_field]))
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return Item(last_user, row, cfg.system_prompt, messages)

    def _check_prompts(self, rows: list[dict[str, Any]], split: str) -> None:
        field = self.dataset_config.prompt_field
        name = self.dataset_config.dataset_name
        if self.dataset_config.messages_field is not None:
            for i, row in enumerate(rows):
                problem = messages_problem(row, self.dataset_config.messages_field)
                if problem is not None:
                    raise DataError(f"{name} [{split}] row {i}: {problem}",
                                    ["each row needs messages: [{\"role\": \"user\", "
                                     "\"content\": \"...\"}], as OpenAI's RFT files have"])
            return
        for i, row in enumerate(rows):
            value = row.get(field)
            if not isinstance(value, str) or not value.strip():
                found = "is missing" if field not in row else f"is {value!r}"
                raise DataError(f"{name} [{split}] row {i}: prompt_field {field!r} {found}; "
                                "expected non-empty text",
                                [f"the row has the fields {', '.join(row) or '(none)'}; "
                                 "set prompt_field to the one that holds the prompt"])


def _passes(rows: list[dict[str, Any]], epochs: int, seed: int | None
            ) -> Iterator[dict[str, Any]]:
    """The rows ``epochs`` times; with ``seed``, each pass in its own shuffled order (the
    first as one pass with that seed would be)."""
    for epoch in range(epochs):
        order = list(rows)
        if seed is not None:
            random.Random(seed if epoch == 0 else f"{seed}:{epoch}").shuffle(order)
        yield from order


# ---- rows ------------------------------------------------------------------------------------

_SPLIT = re.compile(r"(?P<name>[\w.-]+)(?:\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?")


def parse_split(split: str) -> tuple[str, tuple[str | None, str | None] | None]:
    """``"train[:100]"`` → ``("train", (None, "100"))``; ``"test"`` → ``("test", None)``."""
    match = _SPLIT.fullmatch(split.strip())
    if match is None:
        raise ConfigError(f"split {split!r} is not a split name with an optional slice",
                          ["e.g. train, train[:100], train[10:20], test[:10%]"])
    if "[" not in split:
        return match["name"], None
    return match["name"], (match["start"], match["stop"])


def slice_rows(rows: list[dict[str, Any]], bounds: tuple[str | None, str | None]
               ) -> list[dict[str, Any]]:
    """Python slicing with the hub's percent bounds: ``10%`` of 50 rows is row 5."""

    def index(bound: str | None) -> int | None:
        if bound is None:
            return None
        if bound.endswith("%"):
            return round(len(rows) * int(bound[:-1]) / 100)
        return int(bound)

    return rows[index(bounds[0]):index(bounds[1])]


def load_rows(dataset_name: str, dataset_config: str | None, split: str,
              seed: int | None = None) -> list[dict[str, Any]]:
    """The rows of one split (sliced) of a sample, local or hub dataset, as dicts."""
    name, bounds = parse_split(split)
    if dataset_name.startswith("sample:"):
        rows = _sample_rows(dataset_name, seed)
        _only_train(dataset_name, name)
    elif Path(dataset_name).exists():
        rows = _local_rows(dataset_name, name)
    else:
        return _hub_rows(dataset_name, dataset_config, split)  # the hub slices itself
    return rows if bounds is None else slice_rows(rows, bounds)


def _only_train(dataset_name: str, split: str) -> None:
    if split != "train":
        raise ConfigError(f"{dataset_name} has one split, 'train'; got {split!r}",
                          ["slice it for an eval set: eval_split: train[-8:]"])


def _sample_rows(spec: str, seed: int | None) -> list[dict[str, Any]]:
    from preftune.data.sample import iter_samples

    count = spec.partition(":")[2]
    if not count.isdigit() or int(count) < 1:
        raise ConfigError(f"dataset_name {spec!r}: expected sample:N with N >= 1",
                          ["e.g. dataset_name: sample:64"])
    return [{"prompt": s.prompt, "answer": s.responses[0], "category": s.category}
            for s in iter_samples(int(count), seed or 0)]


def _local_rows(path: str, split: str) -> list[dict[str, Any]]:
    import dataclasses

    from preftune.data.records import Problem
    from preftune.data.sources import iter_records, read_table, resolve_source

    source = resolve_source(path)
    if source.kind == "arrow_dir":
        return list(read_table(dataclasses.replace(source, split=split)).to_pylist())
    _only_train(path, split)
    if source.kind in ("json", "jsonl"):
        problems: list[Problem] = []
        rows = [record.value for record in iter_records(source, problems)]
        if problems:
            raise DataError(f"{path} cannot be read: {problems[0]}",
                            ["fix the file; every record must be a JSON object"],
                            [str(p) for p in problems[1:5]])
        not_objects = [i for i, row in enumerate(rows) if not isinstance(row, dict)]
        if not_objects:
            raise DataError(f"{path}: record {not_objects[0]} is not a JSON object",
                            ["each record must be an object with the prompt field"])
        return rows
    return list(read_table(source).to_pylist())


def _hub_rows(name: str, config: str | None, split: str) -> list[dict[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # the hub raises many types: connection, not found, bad split
        raise MissingError(f"could not load {name!r} (config {config!r}, split {split!r}) "
                           f"from the Hugging Face hub: {type(e).__name__}: {e}",
                           ["check dataset_name, dataset_config and split, and the network",
                            "or pass a local file or save_to_disk directory as dataset_name"]
                           ) from e
    return [dict(row) for row in loaded]
