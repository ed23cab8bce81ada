"""Tokenizing pairs: exact ids with a word-level tokenizer, boundary merges with a BPE."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from preftune.data.reader import read_preferences
from preftune.data.records import PreferenceDataset
from preftune.data.tokenize import (
    TokenizeStats,
    UnpairedStats,
    kl_completions,
    tokenize_pairs,
    tokenize_unpaired,
)
from preftune.data.transforms import unpair
from preftune.errors import ConfigError, DataError

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0, 1, 2, 3
PAD, BOS, EOS = 0, 1, 2
WORDS = ["a", "b", "c", "d", "e", "f", "g", "h", "sys", "x", "y", "z",
         "user:", "assistant:", "system:", "<|user|>", "<|assistant|>", "<|system|>",
         "ab", "cd", "abcd"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|> {{ m.content }} </s> {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|> {% endif %}")
BPE_TEXT = ["hello world", "the cat sat on the mat", "hello there", "a cat and a hat"]


def _fast(tok: Tokenizer, bos: bool = True, template: str | None = None
          ) -> PreTrainedTokenizerFast:
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")
    if template is not None:
        fast.chat_template = template
    return fast


def _words(bos: bool = True, template: str | None = None) -> PreTrainedTokenizerFast:
    """Whitespace-split words; a word's id is its index in SPECIALS + WORDS."""
    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return _fast(tok, bos, template)


def W(text: str) -> list[int]:  # noqa: N802 - reads like a constructor of ids
    """Word-level ids of ``text`` as _words() gives them, without specials."""
    vocab = SPECIALS + WORDS
    return [vocab.index(w) if w in vocab else 3 for w in text.split()]


@pytest.fixture(scope="module")
def words() -> PreTrainedTokenizerFast:
    return _words()


@pytest.fixture(scope="module")
def bpe() -> PreTrainedTokenizerFast:
    """Byte-level BPE with a BOS: "hello" is one token, "hel" is not."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(BPE_TEXT * 10, trainer)
    return _fast(tok)


def _dataset(tmp_path: Path, records: list[dict[str, Any]]) -> PreferenceDataset:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = read_preferences(path)
    assert result.dataset is not None, [str(p) for p in result.problems]
    return result.dataset


def _rows(out: Any) -> list[tuple[int, list[int], list[int], list[int]]]:
    return [(r["record"], r["prompt_ids"], r["chosen_ids"], r["rejected_ids"])
            for r in out.rows]


def _msgs(*turns: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in turns]


# ------------------------------------------------------------------------------ text datasets


def test_text_pairs_get_bos_on_the_prompt_and_eos_on_each_response(tmp_path, words):
    dataset = _dataset(tmp_path, [
        {"prompt": "a b", "chosen": " c d", "rejected": " e"},
        {"prompt": "x", "chosen": " y", "rejected": " z z"},
    ])

    out = tokenize_pairs(dataset, words, max_length=16, max_prompt_length=8)

    assert _rows(out) == [
        (0, [BOS, *W("a b")], [*W("c d"), EOS], [*W("e"), EOS]),
        (1, [BOS, *W("x")], [*W("y"), EOS], [*W("z z"), EOS]),
    ]
    assert out.stats == TokenizeStats(pairs=2, truncated_prompts=0, truncated_responses=0,
                                      dropped=0, boundary_mismatches=0)
    assert str(out.rows.features["prompt_ids"].feature.dtype) == "int32"
    assert str(out.rows.features["record"].dtype) == "int64"


def test_system_prompt_comes_first_with_a_blank_line(tmp_path, bpe):
    dataset = _dataset(tmp_path, [
        {"system": "the cat", "prompt": "hello", "chosen": " world", "rejected": " there"}])

    out = tokenize_pairs(dataset, bpe, max_length=64, max_prompt_length=32)

    row = out.rows[0]
    assert row["prompt_ids"] == bpe("the cat\n\nhello")["input_ids"]
    assert row["prompt_ids"][0] == BOS
    assert bpe.decode(row["prompt_ids"], skip_special_tokens=True) == "the cat\n\nhello"
    assert bpe.decode(row["chosen_ids"]) == " world</s>"
    assert bpe.decode(row["rejected_ids"]) == " there</s>"


def test_a_token_merged_across_the_boundary_is_counted_and_the_response_kept(tmp_path, bpe):
    # "hel" + "lo world": the whole text tokenizes "hello" as one token, so the prompt's ids
    # ("he", "l") are not a prefix of the whole text's ids.
    assert bpe("hello world")["input_ids"][:3] != bpe("hel")["input_ids"]
    dataset = _dataset(tmp_path, [
        {"prompt": "hel", "chosen": "lo world", "rejected": "lo there"},
        {"prompt": "hello", "chosen": " world", "rejected": " there"},
    ])

    out = tokenize_pairs(dataset, bpe, max_length=64, max_prompt_length=32)

    merged, clean = out.rows[0], out.rows[1]
    assert merged["prompt_ids"] == bpe("hel")["input_ids"]
    assert merged["chosen_ids"] == bpe("lo world", add_special_tokens=False)["input_ids"] + [EOS]
    assert merged["rejected_ids"] == bpe("lo there", add_special_tokens=False)["input_ids"] + [EOS]
    assert clean["chosen_ids"] == bpe("hello world")["input_ids"][len(clean["prompt_ids"]):] \
        + [EOS]
    assert out.stats.boundary_mismatches == 1  # once per pair, though both responses merged


def test_word_level_boundary_mismatch_when_the_prompt_ends_mid_word(tmp_path, words):
    dataset = _dataset(tmp_path, [{"prompt": "x ab", "chosen": "cd", "rejected": " cd"},
                                  {"prompt": "x ab", "chosen": "cd", "rejected": " c"}])

    out = tokenize_pairs(dataset, words, max_length=16, max_prompt_length=8)

    # "x abcd" is two words; the chosen response is tokenized on its own instead. In the first
    # pair it then equals the rejected one: the boundary check comes before the drop check.
    assert _rows(out) == [(1, [BOS, *W("x ab")], [*W("cd"), EOS], [*W("c"), EOS])]
    assert out.stats.boundary_mismatches == 1
    assert out.stats.dropped == 1


# ---------------------------------------------------------------------- conversational data


def test_chat_template_prompt_is_an_exact_prefix_and_eos_is_not_doubled(tmp_path):
    tok = _words(bos=False, template=CHAT_TEMPLATE)
    dataset = _dataset(tmp_path, [{
        "prompt": _msgs(("system", "sys"), ("user", "a b")),
        "chosen": _msgs(("assistant", "c")),
        "rejected": _msgs(("assistant", "d e")),
    }])

    out = tokenize_pairs(dataset, tok, max_length=32, max_prompt_length=16)

    prompt = W("<|system|> sys") + [EOS] + W("<|user|> a b") + [EOS] + W("<|assistant|>")
    assert _rows(out) == [(0, prompt, [*W("c"), EOS], [*W("d e"), EOS])]
    assert out.stats.boundary_mismatches == 0


def test_a_chatml_response_ends_at_its_eos_not_at_the_newline_after_it(tmp_path, bpe):
    # ChatML (Qwen, SmolLM2) ends a turn with "<|im_end|>\n": here "</s>" plays <|im_end|>.
    tok = copy.deepcopy(bpe)
    tok.chat_template = ("{% for m in messages %}<s>{{ m.role }}\n{{ m.content }}</s>\n"
                         "{% endfor %}{% if add_generation_prompt %}<s>assistant\n{% endif %}")
    prompt, chosen = _msgs(("user", "hello")), _msgs(("assistant", "the cat"))
    dataset = _dataset(tmp_path, [{"prompt": prompt, "chosen": chosen,
                                   "rejected": _msgs(("assistant", "a hat"))}])

    row = tokenize_pairs(dataset, tok, max_length=64, max_prompt_length=32).rows[0]

    whole = tok(tok.apply_chat_template(prompt + chosen, tokenize=False),
                add_special_tokens=False)["input_ids"]
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    assert whole[-2:] == [EOS, *newline]
    # The whole conversation less the newline after the last turn: no "</s>\n</s>".
    assert row["prompt_ids"] + row["chosen_ids"] == whole[:-1]
    assert tok.decode(row["chosen_ids"]) == "the cat</s>"
    assert tok.decode(row["rejected_ids"]) == "a hat</s>"


def test_chat_template_that_does_not_render_the_prompt_as_a_prefix_is_an_error(tmp_path):
    # The generation prompt differs from how the conversation renders the assistant turn.
    template = CHAT_TEMPLATE.replace("<|assistant|> {% endif %}", "x {% endif %}")
    tok = _words(bos=False, template=template)
    dataset = _dataset(tmp_path, [{"prompt": _msgs(("user", "a")),
                                   "chosen": _msgs(("assistant", "b")),
                                   "rejected": _msgs(("assistant", "c"))}])

    with pytest.raises(DataError) as err:
        tokenize_pairs(dataset, tok, max_length=32, max_prompt_length=16)

    assert "record 0: the chat template does not render the prompt as a prefix of the " \
           "conversation" in err.value.message
    assert err.value.details[-1] == "they differ at character 16"  # after "<|user|> a </s> "
    assert err.value.exit_code == 3


def test_conversation_without_a_template_renders_role_lines(tmp_path, words):
    dataset = _dataset(tmp_path, [{
        "prompt": _msgs(("system", "sys"), ("user", "a"), ("assistant", "b"), ("user", "c")),
        "chosen": _msgs(("assistant", "d")),
        "rejected": _msgs(("assistant", "e f")),
    }])

    out = tokenize_pairs(dataset, words, max_length=32, max_prompt_length=16)

    prompt = [BOS, *W("system: sys user: a assistant: b user: c assistant:")]
    assert _rows(out) == [(0, prompt, [*W("d"), EOS], [*W("e f"), EOS])]
    assert out.stats.boundary_mismatches == 0


# --------------------------------------------------------------------------------- truncation


def test_a_long_prompt_keeps_its_bos_and_its_end(tmp_path, words):
    dataset = _dataset(tmp_path, [{"prompt": "a b c d e f", "chosen": " x", "rejected": " y"}])

    out = tokenize_pairs(dataset, words, max_length=8, max_prompt_length=4)

    assert _rows(out) == [(0, [BOS, *W("d e f")], [*W("x"), EOS], [*W("y"), EOS])]
    assert out.stats.truncated_prompts == 1
    assert out.stats.truncated_responses == 0


def test_a_long_prompt_without_bos_keeps_only_its_end(tmp_path):
    tok = _words(bos=False)
    dataset = _dataset(tmp_path, [{"prompt": "a b c d e f", "chosen": " x", "rejected": " y"}])

    out = tokenize_pairs(dataset, tok, max_length=8, max_prompt_length=4)

    assert out.rows[0]["prompt_ids"] == W("c d e f")


def test_responses_are_cut_to_the_room_left_by_the_prompt(tmp_path, words):
    dataset = _dataset(tmp_path, [
        {"prompt": "a b", "chosen": " c d e f", "rejected": " g"},  # chosen is cut
        {"prompt": "a", "chosen": " c d", "rejected": " g"},        # c d </s> fits exactly
    ])

    out = tokenize_pairs(dataset, words, max_length=5, max_prompt_length=3)

    assert _rows(out) == [
        (0, [BOS, *W("a b")], W("c d"), [*W("g"), EOS]),
        (1, [BOS, *W("a")], [*W("c d"), EOS], [*W("g"), EOS]),
    ]
    assert out.stats.truncated_responses == 1


def test_prompts_longer_than_max_length_are_an_error_listing_the_records(tmp_path, words):
    records = [{"prompt": "a b c d e f g", "chosen": " x", "rejected": " y"},  # 8 tokens
               {"prompt": "a b c", "chosen": " x", "rejected": " y"},          # 4: truncated
               {"prompt": "a b c d e f", "chosen": " x", "rejected": " y"}]    # 7 tokens

    with pytest.raises(DataError) as err:
        tokenize_pairs(_dataset(tmp_path, records), words, max_length=6, max_prompt_length=3)

    assert "2 records have prompts longer than max_length (6 tokens)" in err.value.message
    assert err.value.details == ["record 0: prompt is 8 tokens, longer than max_length 6",
                                 "record 2: prompt is 7 tokens, longer than max_length 6"]
    assert err.value.hints == ["raise max_length", "or remove or shorten these prompts"]


def test_the_too_long_list_stops_at_twenty_records(tmp_path, words):
    records = [{"prompt": "a b c d", "chosen": " x", "rejected": " y"}] * 25

    with pytest.raises(DataError) as err:
        tokenize_pairs(_dataset(tmp_path, records), words, max_length=4, max_prompt_length=2)

    assert "25 records" in err.value.message
    assert len(err.value.details) == 21
    assert err.value.details[-1] == "... and 5 more"


def test_max_prompt_length_must_leave_room_for_a_response(tmp_path, words):
    dataset = _dataset(tmp_path, [{"prompt": "a", "chosen": " b", "rejected": " c"}])

    with pytest.raises(ConfigError, match=r"max_prompt_length \(8\) must be less than"):
        tokenize_pairs(dataset, words, max_length=8, max_prompt_length=8)


# ----------------------------------------------------------------------------------- dropping


def test_pairs_identical_after_truncation_are_dropped_and_counted(tmp_path, words):
    dataset = _dataset(tmp_path, [
        {"prompt": "a", "chosen": " c d e", "rejected": " c d f"},  # both cut to "c d"
        {"prompt": "a", "chosen": " x", "rejected": " y"},
    ])

    out = tokenize_pairs(dataset, words, max_length=4, max_prompt_length=2)

    assert _rows(out) == [(1, [BOS, *W("a")], [*W("x"), EOS], [*W("y"), EOS])]
    assert out.stats == TokenizeStats(pairs=1, truncated_prompts=0, truncated_responses=0,
                                      dropped=1, boundary_mismatches=0)


def test_every_pair_dropped_is_an_error(tmp_path, words):
    dataset = _dataset(tmp_path, [{"prompt": "a", "chosen": " c d e", "rejected": " c d f"}])

    with pytest.raises(DataError, match="all 1 pairs were dropped"):
        tokenize_pairs(dataset, words, max_length=4, max_prompt_length=2)


# ---------------------------------------------------------------------------------- sft target


def test_sft_target_replaces_chosen_where_set(tmp_path, words):
    dataset = _dataset(tmp_path, [
        {"prompt": "a", "responses": [" b", " c", " d"], "pairs": [[0, 1], [2, 1]],
         "sft_target": " x y"},
        {"prompt": "e", "responses": [" f", " g"], "pairs": [[0, 1]]},
    ])

    sft = tokenize_pairs(dataset, words, max_length=16, max_prompt_length=8, use_sft_target=True)
    plain = tokenize_pairs(dataset, words, max_length=16, max_prompt_length=8)

    assert [r["chosen_ids"] for r in sft.rows] == [[*W("x y"), EOS], [*W("x y"), EOS],
                                                   [*W("f"), EOS]]
    assert [r["chosen_ids"] for r in plain.rows] == [[*W("b"), EOS], [*W("d"), EOS],
                                                     [*W("f"), EOS]]
    assert sft.rows["record"] == [0, 0, 1]


def test_sft_target_in_a_conversation_is_one_assistant_message(tmp_path):
    tok = _words(bos=False, template=CHAT_TEMPLATE)
    dataset = _dataset(tmp_path, [{
        "prompt": _msgs(("user", "a")), "chosen": _msgs(("assistant", "b")),
        "rejected": _msgs(("assistant", "c")), "sft_target": "x y",
    }])

    out = tokenize_pairs(dataset, tok, max_length=32, max_prompt_length=16, use_sft_target=True)

    assert out.rows[0]["chosen_ids"] == [*W("x y"), EOS]


# ------------------------------------------------------------------------------------ batching


def test_batches_give_the_same_ids_as_one_pair_at_a_time(tmp_path, bpe):
    records = [{"prompt": f"the cat {'sat ' * (i % 7)}on", "chosen": " the mat" * (1 + i % 3),
                "rejected": " a hat"} for i in range(1200)]
    dataset = _dataset(tmp_path, records)

    out = tokenize_pairs(dataset, bpe, max_length=24, max_prompt_length=12)

    assert out.stats.pairs == 1200
    assert out.rows["record"] == list(range(1200))
    for i in (0, 5, 513, 1199):
        one = tokenize_pairs(dataset.select([i]), bpe, max_length=24, max_prompt_length=12)
        assert _rows(one) == [_rows(out)[i]]


def test_the_tokenizer_is_not_changed(tmp_path, words):
    before = copy.deepcopy(words.init_kwargs)
    dataset = _dataset(tmp_path, [{"prompt": "a", "chosen": " b", "rejected": " c"}])

    tokenize_pairs(dataset, words, max_length=8, max_prompt_length=4)

    assert words.init_kwargs == before


def test_conversation_without_a_template_renders_the_exact_text(tmp_path, bpe):
    dataset = _dataset(tmp_path, [{
        "prompt": _msgs(("user", "hello")), "chosen": _msgs(("assistant", "the cat")),
        "rejected": _msgs(("assistant", "a hat")),
    }])

    out = tokenize_pairs(dataset, bpe, max_length=64, max_prompt_length=32)

    row = out.rows[0]
    assert bpe.decode(row["prompt_ids"]) == "<s>user: hello\nassistant: "
    assert bpe.decode(row["chosen_ids"]) == "the cat</s>"
    assert bpe.decode(row["rejected_ids"]) == "a hat</s>"
    # A byte-level BPE joins the prompt's trailing space to the next word (" the"): the
    # response is tokenized on its own, and the pair counted.
    assert out.stats.boundary_mismatches == 1


# ------------------------------------------------------------------------- unpaired examples


def _examples(out: Any) -> list[tuple[int, list[int], list[int], list[int], bool]]:
    return [(r["record"], r["prompt_ids"], r["chosen_ids"], r["rejected_ids"], r["label"])
            for r in out.rows]


@pytest.mark.parametrize(("rows", "batch_size", "kl"), [
    ("abc", 3, "cab"),      # one chunk: [c[-1]] + c[:-1]
    ("abcde", 2, "badce"),  # chunks ab, cd, e: a last chunk of one keeps its own
    ("abcd", 1, "abcd"),
    ("abcdef", 4, "dabcfe"),
])
def test_kl_completions_rotate_each_chunk_by_one(rows, batch_size, kl):
    assert kl_completions(list(rows), batch_size) == list(kl)


def test_unpaired_rows_carry_the_completion_and_the_kl_completion(tmp_path, words):
    # Chunk of 3: the KL completions of [d, e e, f] are [f, d, e e].
    dataset = _dataset(tmp_path, [
        {"prompt": "a", "completion": " d", "label": True},
        {"prompt": "b", "completion": " e e", "label": False},
        {"prompt": "c", "completion": " f", "label": True},
    ])

    out = tokenize_unpaired(dataset, words, max_length=16, max_prompt_length=8, batch_size=3)

    d, ee, f = [*W("d"), EOS], [*W("e e"), EOS], [*W("f"), EOS]
    assert _examples(out) == [
        (0, [BOS, *W("a")], d, f, True),
        (1, [BOS, *W("b")], ee, d, False),
        (2, [BOS, *W("c")], f, ee, True),
    ]
    assert out.rows.to_dict()["line"] == [1, 2, 3]
    assert out.rows.column_names == ["record", "line", "prompt_ids", "chosen_ids",
                                     "rejected_ids", "label"]
    assert str(out.rows.features["label"].dtype) == "bool"
    assert str(out.rows.features["chosen_ids"].feature.dtype) == "int32"
    assert out.stats == UnpairedStats(examples=3, desirable=2, undesirable=1,
                                      truncated_prompts=0, truncated_completions=0,
                                      truncated_kl=0, boundary_mismatches=0)


def test_kl_chunks_follow_batch_size_across_tokenizer_batches(tmp_path, words, monkeypatch):
    from preftune.data import tokenize

    monkeypatch.setattr(tokenize, "_BATCH", 2)  # tokenizer batches of 2, KL chunks of 3
    letters = "a b c d e f g".split()
    dataset = _dataset(tmp_path, [{"prompt": "x", "completion": f" {w}", "label": True}
                                  for w in letters])

    out = tokenize_unpaired(dataset, words, max_length=8, max_prompt_length=4, batch_size=3)

    kl = [ids[0] for ids in out.rows.to_dict()["rejected_ids"]]
    assert kl == W("c a b f d e g")


def test_the_completion_is_tokenized_as_a_pairs_chosen_response(tmp_path, bpe):
    tok = copy.deepcopy(bpe)
    tok.chat_template = ("{% for m in messages %}<s>{{ m.role }}\n{{ m.content }}</s>\n"
                         "{% endfor %}{% if add_generation_prompt %}<s>assistant\n{% endif %}")
    pairs = [
        {"prompt": _msgs(("user", "hello")), "chosen": _msgs(("assistant", "the cat")),
         "rejected": _msgs(("assistant", "a hat"))},
        {"prompt": _msgs(("user", "hel")), "chosen": _msgs(("assistant", "lo world")),
         "rejected": _msgs(("assistant", "the mat"))},
    ]
    paired = tokenize_pairs(_dataset(tmp_path, pairs), tok, max_length=64,
                            max_prompt_length=32)
    unpaired = tokenize_unpaired(unpair(_dataset(tmp_path, pairs)), tok, max_length=64,
                                 max_prompt_length=32, batch_size=2)

    rows, pair_rows = unpaired.rows.to_dict(), paired.rows.to_dict()
    assert rows["prompt_ids"] == pair_rows["prompt_ids"] * 2
    assert rows["chosen_ids"] == pair_rows["chosen_ids"] + pair_rows["rejected_ids"]
    assert rows["label"] == [True, True, False, False]
    assert unpaired.stats.boundary_mismatches == paired.stats.boundary_mismatches


def test_text_unpaired_examples_take_the_system_prompt(tmp_path, bpe):
    dataset = _dataset(tmp_path, [
        {"system": "the cat", "prompt": "hello", "completion": " world", "label": False}])

    row = tokenize_unpaired(dataset, bpe, max_length=64, max_prompt_length=32,
                            batch_size=2).rows[0]

    assert row["prompt_ids"] == bpe("the cat\n\nhello")["input_ids"]
    assert bpe.decode(row["chosen_ids"]) == " world</s>"
    assert row["rejected_ids"] == row["chosen_ids"]  # a chunk of one row lends itself


def test_completion_and_kl_completion_are_cut_to_the_rows_room(tmp_path, words):
    # max_length 5: row 0 leaves 3 tokens after [BOS a], row 1 leaves 2 after [BOS a b].
    dataset = _dataset(tmp_path, [
        {"prompt": "a", "completion": " c d e f", "label": True},
        {"prompt": "a b", "completion": " g", "label": False},
    ])

    out = tokenize_unpaired(dataset, words, max_length=5, max_prompt_length=3, batch_size=2)

    assert _examples(out) == [
        (0, [BOS, *W("a")], W("c d e"), [*W("g"), EOS], True),
        (1, [BOS, *W("a b")], [*W("g"), EOS], W("c d"), False),  # KL from row 0's full ids
    ]
    assert all(len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"])) <= 5
               for r in out.rows)
    assert (out.stats.truncated_completions, out.stats.truncated_kl) == (1, 1)


def test_unpaired_prompts_are_truncated_and_too_long_ones_listed(tmp_path, words):
    fits = _dataset(tmp_path, [{"prompt": "a b c d e", "completion": " x", "label": True}])
    out = tokenize_unpaired(fits, words, max_length=8, max_prompt_length=3, batch_size=2)
    assert out.rows[0]["prompt_ids"] == [BOS, *W("d e")]
    assert out.stats.truncated_prompts == 1

    too_long = _dataset(tmp_path, [{"prompt": "a b c d e f g h", "completion": " x",
                                    "label": True}])
    with pytest.raises(DataError) as err:
        tokenize_unpaired(too_long, words, max_length=6, max_prompt_length=3, batch_size=2)
    assert err.value.details == ["record 0: prompt is 9 tokens, longer than max_length 6"]
