"""Turn canonical preference pairs into token ids for training.

Each pair becomes ``prompt_ids`` and the two responses' ids, such that ``prompt_ids +
chosen_ids`` is what the model reads for the chosen answer (the prompt is stored once and shared
by both). How a pair is rendered to text depends on the dataset and the tokenizer:

- text datasets: ``system + "\\n\\n" + prompt``, then the response with no separator, tokenized
  with the tokenizer's special tokens (a BOS where it adds one);
- conversational datasets, tokenizer with a chat template: the template renders the prompt with
  a generation prompt and the whole conversation; the response is what the conversation adds
  after the prompt, up to its end-of-turn EOS: the whitespace a template writes after it
  (ChatML's ``<|im_end|>\\n``) separates turns, the model never generates it, and adding EOS
  after it would teach ``<|im_end|>\\n<|im_end|>``. The text is tokenized without special
  tokens (templates carry their own);
- conversational datasets, no chat template: ``"{role}: {content}"`` lines, the prompt ending
  with ``"assistant: "``, tokenized with the tokenizer's special tokens.

The response's ids are the tail of the whole text's ids after the prompt's, so they are the
tokens the model sees at training time. Where the tokenizer merged a token across the boundary
(the prompt's ids are then not a prefix), the response is tokenized on its own and the pair is
counted in ``boundary_mismatches``.

Unpaired examples (``tokenize_unpaired``) go the same way, the completion rendered and
tokenized exactly as a pair's chosen response; each row also gets a KL completion (see
``kl_completions``) for KTO's reference point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa

from preftune.data.records import Message, PreferenceDataset, UnpairedDataset

if TYPE_CHECKING:  # importing datasets and transformers takes seconds: only where used
    import datasets
    from transformers import PreTrainedTokenizerBase
from preftune.errors import ConfigError, DataError

_BATCH = 512  # texts per tokenizer call: large enough to amortise the call, small in memory
_LISTED = 20  # records named in an error's details
_IDS = pa.list_(pa.int32())
_T = TypeVar("_T")


@dataclass(frozen=True)
class TokenizeStats:
    """What tokenizing did. All counts but ``dropped`` are over the pairs kept."""

    pairs: int  # pairs kept
    truncated_prompts: int  # prompts cut to max_prompt_length (they keep their end)
    truncated_responses: int  # pairs whose chosen or rejected was cut to fit max_length
    dropped: int  # pairs whose chosen and rejected ids were identical after truncation
    boundary_mismatches: int  # pairs whose prompt ids were not a prefix of prompt+response ids


@dataclass
class TokenizedPairs:
    """Token ids per pair: columns record (int64), prompt_ids, chosen_ids, rejected_ids (int32)."""

    rows: datasets.Dataset
    stats: TokenizeStats


@dataclass(frozen=True)
class UnpairedStats:
    """What tokenizing unpaired examples did (none is dropped)."""

    examples: int
    desirable: int
    undesirable: int
    truncated_prompts: int  # prompts cut to max_prompt_length (they keep their end)
    truncated_completions: int  # completions cut to fit max_length after their prompt
    truncated_kl: int  # KL completions cut to fit max_length after their row's prompt
    boundary_mismatches: int  # examples whose prompt ids were not a prefix of the whole's


@dataclass
class TokenizedExamples:
    """Token ids per unpaired example, laid out as pairs so the loop reads them alike:
    record, line (int64), prompt_ids, chosen_ids (the completion), rejected_ids (the KL
    completion) (list<int32>), label (bool)."""

    rows: datasets.Dataset
    stats: UnpairedStats


@dataclass
class _Texts:
    """One batch rendered to text: the full text of a response is ``prompt + response``;
    ``responses`` holds one list per response column (chosen and rejected, or completion)."""

    records: list[int]
    prompts: list[str]
    responses: list[list[str]]


@dataclass
class _Encoded:
    """One batch as ids; ``merged``: rows where a response was tokenized apart from its prompt."""

    records: list[int]
    prompts: list[list[int]]
    responses: list[list[list[int]]]  # one list per response column, as in _Texts
    merged: set[int]


@dataclass
class _Counts:
    """TokenizeStats less ``pairs``, counted as batches go by."""

    truncated_prompts: int = 0
    truncated_responses: int = 0
    dropped: int = 0
    boundary_mismatches: int = 0


def tokenize_pairs(dataset: PreferenceDataset, tokenizer: PreTrainedTokenizerBase,
                   max_length: int, max_prompt_length: int,
                   use_sft_target: bool = False) -> TokenizedPairs:
    """Token ids for every pair of ``dataset``, truncated to fit ``max_length``.

    Each response ends with the EOS token (added unless its ids already end with it). A prompt
    longer than ``max_prompt_length`` keeps its last tokens (and its BOS, if it starts with
    one); responses keep their start and are cut to ``max_length - len(prompt_ids)``. Pairs
    whose chosen and rejected ids are identical after that are dropped and counted.
    ``use_sft_target`` takes the record's ``sft_target``, where set, as the chosen response.

    Raises ``DataError`` when any prompt alone is longer than ``max_length`` (listing the
    records), when every pair is dropped, or when the chat template does not render a prompt
    as a prefix of its conversation.
    """
    _check_lengths(max_length, max_prompt_length)
    if len(dataset) == 0:
        raise DataError(f"{dataset.source}: no pairs to tokenize",
                        ["check that the dataset holds at least one pair"])
    counts = _Counts()
    tables: list[pa.Table] = []
    too_long: dict[int, int] = {}  # record -> prompt tokens; pairs of one record share a prompt
    for batch in dataset.table.to_batches(max_chunksize=_BATCH):
        rows = batch.to_pydict()
        chosen: list[Any] = rows["chosen"]
        if use_sft_target:
            chosen = [_sft_chosen(target, default, dataset.conversational)
                      for target, default in zip(rows["sft_target"], chosen, strict=True)]
        texts, special = _render(rows, [chosen, rows["rejected"]], dataset.conversational,
                                 tokenizer, dataset.source)
        encoded = _encode_texts(tokenizer, texts, special)
        too_long.update((record, len(ids)) for record, ids in zip(
            encoded.records, encoded.prompts, strict=True) if len(ids) > max_length)
        if not too_long:  # once one prompt is too long, only the list of offenders matters
            tables.append(_fit_pairs(encoded, tokenizer, max_length, max_prompt_length, counts))
    if too_long:
        raise _too_long_error(dataset.source, too_long, max_length)
    kept = sum(t.num_rows for t in tables)
    if kept == 0:
        raise DataError(
            f"{dataset.source}: all {counts.dropped} pairs were dropped: chosen and rejected are "
            f"identical after truncation to max_length {max_length}",
            ["raise max_length so that the responses differ within it",
             "check the data: a pair needs two different responses (preftune validate "
             "reports identical pairs)"])
    import datasets

    return TokenizedPairs(datasets.Dataset(pa.concat_tables(tables)),
                          TokenizeStats(pairs=kept, **asdict(counts)))


def tokenize_unpaired(dataset: UnpairedDataset, tokenizer: PreTrainedTokenizerBase,
                      max_length: int, max_prompt_length: int,
                      batch_size: int) -> TokenizedExamples:
    """Token ids for every unpaired example and its KL completion, truncated to fit
    ``max_length``.

    Prompt and completion are rendered, tokenized and cut as a pair's prompt and chosen
    response are (the completion ends with EOS; the prompt keeps its end within
    ``max_prompt_length``). A row's KL completion is another example's completion ids
    (``kl_completions`` over chunks of ``batch_size`` rows, the loop's micro-batches) as they
    were before that example's own cut. Completion and KL completion are each cut to
    ``max_length - len(prompt_ids)``, so both sequences of a row fit ``max_length``. No
    example is dropped.

    Raises ``DataError`` when any prompt alone is longer than ``max_length`` (listing the
    records), or when the chat template does not render a prompt as a prefix of its
    conversation.
    """
    _check_lengths(max_length, max_prompt_length)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if len(dataset) == 0:
        raise DataError(f"{dataset.source}: no examples to tokenize",
                        ["check that the dataset holds at least one example"])
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    prompts: list[list[int]] = []
    completions: list[list[int]] = []  # with EOS, before truncation
    truncated_prompts = mismatches = 0
    too_long: dict[int, int] = {}  # record -> prompt tokens
    for batch in dataset.table.to_batches(max_chunksize=_BATCH):
        values = batch.to_pydict()
        texts, special = _render(values, [values["completion"]], dataset.conversational,
                                 tokenizer, dataset.source)
        encoded = _encode_texts(tokenizer, texts, special)
        too_long.update((record, len(ids)) for record, ids in zip(
            encoded.records, encoded.prompts, strict=True) if len(ids) > max_length)
        if too_long:  # once one prompt is too long, only the list of offenders matters
            continue
        mismatches += len(encoded.merged)
        for prompt, completion in zip(encoded.prompts, encoded.responses[0], strict=True):
            prompt, cut = _fit_prompt(prompt, bos, max_prompt_length)
            truncated_prompts += cut
            prompts.append(prompt)
            completions.append(_with_eos(completion, eos))
    if too_long:
        raise _too_long_error(dataset.source, too_long, max_length)
    rooms = [max_length - len(p) for p in prompts]
    kl = kl_completions(completions, batch_size)
    table = dataset.table
    rows = pa.table({
        "record": table["record"], "line": table["line"], "prompt_ids": _id_lists(prompts),
        "chosen_ids": _id_lists([c[:room] for c, room in zip(completions, rooms, strict=True)]),
        "rejected_ids": _id_lists([k[:room] for k, room in zip(kl, rooms, strict=True)]),
        "label": table["label"],
    })
    stats = UnpairedStats(
        examples=len(dataset), desirable=dataset.desirable, undesirable=dataset.undesirable,
        truncated_prompts=truncated_prompts,
        truncated_completions=sum(len(c) > room for c, room in zip(completions, rooms,
                                                                    strict=True)),
        truncated_kl=sum(len(k) > room for k, room in zip(kl, rooms, strict=True)),
        boundary_mismatches=mismatches)
    import datasets

    return TokenizedExamples(datasets.Dataset(rows), stats)


def kl_completions(completions: Sequence[_T], batch_size: int) -> list[_T]:
    """Each row's KL completion: within consecutive chunks of ``batch_size`` rows, in order,
    row k gets row k-1's completion and the chunk's first row gets its last's, i.e. a chunk
    ``c`` becomes ``[c[-1]] + c[:-1]`` (TRL 1.16, ``KTOTrainer``'s ``add_kl_completion_ids``).

    KTO (Ethayarajh et al. 2024, arXiv:2402.01306) estimates its reference point, the KL
    term, from mismatched (prompt, completion) pairs. Drawn from the rows the loop batches
    together, the batch's mismatched completions are the same set as its matched ones. A
    chunk of one row (a last, short one) gets its own completion back, as in TRL.
    """
    out: list[_T] = []
    for start in range(0, len(completions), batch_size):
        chunk = list(completions[start:start + batch_size])
        out.extend([chunk[-1], *chunk[:-1]])
    return out


def _check_lengths(max_length: int, max_prompt_length: int) -> None:
    if max_prompt_length < 1:
        raise ConfigError(f"max_prompt_length must be at least 1, got {max_prompt_length}")
    if max_prompt_length >= max_length:
        raise ConfigError(
            f"max_prompt_length ({max_prompt_length}) must be less than max_length "
            f"({max_length})", ["leave room for the response: max_length is prompt + response"])


# ------------------------------------------------------------------------------- rendering


def _render(rows: dict[str, list[Any]], answers: list[list[Any]], conversational: bool,
            tokenizer: PreTrainedTokenizerBase, source: str) -> tuple[_Texts, bool]:
    """A batch (``rows`` holds its record, system and prompt columns; ``answers`` its
    response columns) as texts, and whether to add the tokenizer's specials."""
    if not conversational:
        prompts = [f"{system}\n\n{prompt}" if system else prompt
                   for system, prompt in zip(rows["system"], rows["prompt"], strict=True)]
        return _Texts(rows["record"], prompts, answers), True
    if tokenizer.chat_template:
        return _render_template(tokenizer, rows["record"], rows["prompt"], answers,
                                source), False
    prompts = [_plain(prompt) + "\nassistant: " for prompt in rows["prompt"]]
    # The first response message's "assistant: " is the prompt's last line.
    return _Texts(rows["record"], prompts,
                  [[_plain(a)[len("assistant: "):] for a in column] for column in answers]), True


def _sft_chosen(target: str | None, default: Any, conversational: bool) -> Any:
    if not target:
        return default
    return [Message(role="assistant", content=target)] if conversational else target


def _plain(messages: list[Message]) -> str:
    """Messages as ``role: content`` lines, for tokenizers without a chat template."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _render_template(tokenizer: PreTrainedTokenizerBase, records: list[int],
                     prompts: list[list[Message]], columns: list[list[list[Message]]],
                     source: str) -> _Texts:
    """Prompt and response texts as the chat template renders them."""
    prompt_texts = _apply_template(tokenizer, prompts, add_generation_prompt=True)
    responses: list[list[str]] = []
    for answers in columns:
        full_texts = _apply_template(
            tokenizer, [p + a for p, a in zip(prompts, answers, strict=True)],
            add_generation_prompt=False)
        for record, prompt, full in zip(records, prompt_texts, full_texts, strict=True):
            if not full.startswith(prompt):
                raise _template_error(source, record, prompt, full)
        responses.append([_end_at_eos(full[len(p):], tokenizer.eos_token)
                          for p, full in zip(prompt_texts, full_texts, strict=True)])
    return _Texts(records, prompt_texts, responses)


def _end_at_eos(response: str, eos: str | None) -> str:
    """``response`` without the whitespace a template writes after its closing EOS."""
    stripped = response.rstrip()
    return stripped if eos and stripped.endswith(eos) else response


def _apply_template(tokenizer: PreTrainedTokenizerBase, conversations: list[list[Message]],
                    add_generation_prompt: bool) -> list[str]:
    # Rendered to text: with tokenize=True transformers 5 returns a BatchEncoding, not ids.
    texts = tokenizer.apply_chat_template(conversations, tokenize=False,  # type: ignore[arg-type]
                                          add_generation_prompt=add_generation_prompt)
    return list(texts)


def _template_error(source: str, record: int, prompt: str, full: str) -> DataError:
    at = next((i for i, (a, b) in enumerate(zip(prompt, full, strict=False)) if a != b),
              min(len(prompt), len(full)))
    start = max(0, at - 40)
    return DataError(
        f"{source}: record {record}: the chat template does not render the prompt as a prefix "
        f"of the conversation",
        ["use a tokenizer whose chat template renders the prompt (with the generation prompt) "
         "as the start of the whole conversation",
         "or pass a tokenizer without a chat template to use plain 'role: content' lines"],
        [f"prompt renders as:       {prompt[start:at + 40]!r}",
         f"conversation renders as: {full[start:at + 40]!r}",
         f"they differ at character {at}"])


# ------------------------------------------------------------------------------ tokenizing


def _encode(tokenizer: PreTrainedTokenizerBase, texts: list[str],
            add_special_tokens: bool) -> list[list[int]]:
    if not texts:
        return []
    encoded = tokenizer(texts, add_special_tokens=add_special_tokens,
                        return_attention_mask=False, verbose=False)
    return list(encoded["input_ids"])


def _encode_texts(tokenizer: PreTrainedTokenizerBase, texts: _Texts, special: bool) -> _Encoded:
    prompt_ids = _encode(tokenizer, texts.prompts, special)
    responses: list[list[list[int]]] = []
    merged: set[int] = set()
    for column in texts.responses:
        ids, column_merged = _responses(tokenizer, texts.prompts, column, prompt_ids, special)
        responses.append(ids)
        merged |= column_merged
    return _Encoded(texts.records, prompt_ids, responses, merged)


def _responses(tokenizer: PreTrainedTokenizerBase, prompts: list[str], responses: list[str],
               prompt_ids: list[list[int]], special: bool) -> tuple[list[list[int]], set[int]]:
    """Each response's ids as they follow its prompt, and the rows where the boundary merged."""
    full_ids = _encode(tokenizer, [p + r for p, r in zip(prompts, responses, strict=True)],
                       special)
    out: list[list[int]] = []
    merged: list[int] = []
    for i, (full, prompt) in enumerate(zip(full_ids, prompt_ids, strict=True)):
        if full[:len(prompt)] == prompt:
            out.append(full[len(prompt):])
        else:
            out.append([])
            merged.append(i)
    alone = _encode(tokenizer, [responses[i] for i in merged], False)
    for i, ids in zip(merged, alone, strict=True):
        out[i] = ids
    return out, set(merged)


def _fit_pairs(encoded: _Encoded, tokenizer: PreTrainedTokenizerBase, max_length: int,
               max_prompt_length: int, counts: _Counts) -> pa.Table:
    """The batch's kept pairs as a table, truncated; ``counts`` records what happened."""
    columns: dict[str, list[Any]] = {"record": [], "prompt": [], "chosen": [], "rejected": []}
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    for i, record in enumerate(encoded.records):
        prompt, chosen, rejected, (cut_prompt, cut_response) = _fit(
            encoded.prompts[i], _with_eos(encoded.responses[0][i], eos),
            _with_eos(encoded.responses[1][i], eos), bos, max_length, max_prompt_length)
        if chosen == rejected:
            counts.dropped += 1
            continue
        counts.truncated_prompts += cut_prompt
        counts.truncated_responses += cut_response
        counts.boundary_mismatches += i in encoded.merged
        columns["record"].append(record)
        columns["prompt"].append(prompt)
        columns["chosen"].append(chosen)
        columns["rejected"].append(rejected)
    return _table(columns)


def _with_eos(ids: list[int], eos: int | None) -> list[int]:
    if eos is None or (ids and ids[-1] == eos):
        return ids
    return [*ids, eos]


def _fit(prompt: list[int], chosen: list[int], rejected: list[int], bos: int | None,
         max_length: int, max_prompt_length: int
         ) -> tuple[list[int], list[int], list[int], tuple[bool, bool]]:
    """Truncate a pair: the prompt keeps its end (and BOS), the responses their start."""
    prompt, cut_prompt = _fit_prompt(prompt, bos, max_prompt_length)
    room = max_length - len(prompt)
    cut_response = len(chosen) > room or len(rejected) > room
    return prompt, chosen[:room], rejected[:room], (cut_prompt, cut_response)


def _fit_prompt(prompt: list[int], bos: int | None,
                max_prompt_length: int) -> tuple[list[int], bool]:
    """The prompt cut to ``max_prompt_length``: it keeps its end, and its BOS if it has one."""
    if len(prompt) <= max_prompt_length:
        return prompt, False
    keep_bos = bos is not None and prompt[0] == bos
    tail = max_prompt_length - keep_bos
    return prompt[:keep_bos] + prompt[len(prompt) - tail:], True


def _table(columns: dict[str, list[Any]]) -> pa.Table:
    return pa.table({
        "record": pa.array(columns["record"], type=pa.int64()),
        "prompt_ids": _id_lists(columns["prompt"]),
        "chosen_ids": _id_lists(columns["chosen"]),
        "rejected_ids": _id_lists(columns["rejected"]),
    })


def _id_lists(rows: Sequence[list[int]]) -> pa.ListArray:
    # One flat buffer plus offsets: much faster than converting a list of lists element-wise.
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    values = np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), type=_IDS)


def _too_long_error(source: str, too_long: dict[int, int], max_length: int) -> DataError:
    details = [f"record {record}: prompt is {tokens} tokens, longer than max_length {max_length}"
               for record, tokens in list(too_long.items())[:_LISTED]]
    if len(too_long) > _LISTED:
        details.append(f"... and {len(too_long) - _LISTED} more")
    noun = "record has a prompt" if len(too_long) == 1 else "records have prompts"
    return DataError(
        f"{source}: {len(too_long)} {noun} longer than max_length ({max_length} tokens)",
        ["raise max_length", "or remove or shorten these prompts"], details)
