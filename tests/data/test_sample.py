"""Tests for the deterministic sample preference data behind ``preftune sample``."""

import dataclasses
import hashlib
import json
import re
from collections import Counter
from itertools import islice

import pytest

from preftune.data import sample
from preftune.data.sample import CATEGORIES, SampleRecord, generate_samples, iter_samples
from preftune.errors import MissingError


@pytest.fixture(scope="module")
def records() -> list[SampleRecord]:
    return generate_samples(2000, seed=0)


# sha256 of the first 200 records at seed 0, one JSON object per line. The tables and the
# generator decide every byte of it: a deliberate change to either updates this value (and the
# tiny tokenizer's pin in tests/models/test_tiny.py, which is trained on these records).
PINNED_200_SEED_0 = "0324da65e95861da69cd07a760a45800f3c90bccd8d0f6a25dc76d5511aca18d"


def test_output_is_pinned_so_a_table_edit_cannot_change_it_silently() -> None:
    digest = hashlib.sha256()
    for r in generate_samples(200, seed=0):
        digest.update(json.dumps(dataclasses.asdict(r), ensure_ascii=False).encode() + b"\n")
    assert digest.hexdigest() == PINNED_200_SEED_0


def test_same_seed_gives_identical_records() -> None:
    assert generate_samples(300, seed=7) == generate_samples(300, seed=7)


def test_different_seeds_give_different_records() -> None:
    a, b = generate_samples(100, seed=1), generate_samples(100, seed=2)
    assert a != b
    assert sum(x.prompt != y.prompt for x, y in zip(a, b, strict=True)) > 50


def test_first_records_do_not_depend_on_how_many_are_requested() -> None:
    short = generate_samples(37, seed=5)
    long = generate_samples(500, seed=5)
    assert long[:37] == short
    assert list(islice(iter_samples(10_000, seed=5), 37)) == short


def test_iter_samples_is_lazy_and_matches_generate_samples() -> None:
    it = iter_samples(1_000_000_000, seed=3)
    assert isinstance(next(it), SampleRecord)
    assert list(iter_samples(25, seed=3)) == generate_samples(25, seed=3)


@pytest.mark.parametrize("bad", [0, -5])
def test_fewer_than_one_sample_is_rejected_immediately(bad: int) -> None:
    with pytest.raises(ValueError, match=rf"^num_samples must be at least 1, got {bad}$"):
        iter_samples(bad)
    with pytest.raises(ValueError, match=rf"got {bad}$"):
        generate_samples(bad, seed=1)


def test_categories_are_distinct_and_at_least_eight() -> None:
    assert len(CATEGORIES) >= 8
    assert len(set(CATEGORIES)) == len(CATEGORIES)


def test_every_record_is_well_formed(records: list[SampleRecord]) -> None:
    assert len(records) == 2000
    for r in records:
        assert isinstance(r, SampleRecord)
        assert isinstance(r.prompt, str) and r.prompt.strip()
        assert isinstance(r.responses, tuple) and 2 <= len(r.responses) <= 4
        assert all(isinstance(x, str) and x.strip() for x in r.responses)
        assert len(set(r.responses)) == len(r.responses), r
        assert r.category in CATEGORIES
        assert r.system is None or (isinstance(r.system, str) and r.system.strip())


def test_no_template_slot_is_left_unfilled(records: list[SampleRecord]) -> None:
    slot = re.compile(r"\{[A-Za-z_]+\}")
    for r in records:
        assert not slot.search(r.prompt), r.prompt
        for response in r.responses:
            assert not slot.search(response), response


def test_records_are_immutable(records: list[SampleRecord]) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        records[0].prompt = "changed"  # type: ignore[misc]


def test_large_samples_are_varied(records: list[SampleRecord]) -> None:
    assert len({r.prompt for r in records}) >= 1000
    categories = Counter(r.category for r in records)
    assert set(categories) == set(CATEGORIES)
    assert min(categories.values()) > 2000 / len(CATEGORIES) / 2
    with_system = sum(r.system is not None for r in records)
    assert 0.05 * len(records) < with_system < 0.3 * len(records)
    assert {len(r.responses) for r in records} == {2, 3, 4}


def test_records_have_a_realistic_size(records: list[SampleRecord]) -> None:
    sizes = [len(r.prompt) + sum(len(x) for x in r.responses) for r in records]
    assert 300 <= sum(sizes) / len(sizes) <= 700


def test_best_response_is_systematically_better_than_worst(records: list[SampleRecord]) -> None:
    sample = records[:1000]
    best = sum(len(r.responses[0]) for r in sample) / len(sample)
    worst = sum(len(r.responses[-1]) for r in sample) / len(sample)
    assert best > 2 * worst
    assert all(len(r.responses[0]) > max(len(x) for x in r.responses[1:]) for r in sample)


def test_ranking_is_consistent_across_records(records: list[SampleRecord]) -> None:
    # Contradictory rankings would make the preference signal unlearnable.
    best = {r.responses[0] for r in records}
    worse = {x for r in records for x in r.responses[1:]}
    assert not best & worse
    above = {
        (r.responses[i], r.responses[j])
        for r in records
        for i in range(len(r.responses))
        for j in range(i + 1, len(r.responses))
    }
    contradictions = [(a, b) for a, b in above if (b, a) in above]
    assert not contradictions, contradictions[:3]


def test_small_samples_do_not_repeat_a_prompt() -> None:
    records = generate_samples(500, seed=11)
    assert len({r.prompt for r in records}) == 500


def test_table_rows_become_tuples_in_field_order_with_texts_as_lines_joined() -> None:
    rows = [{"n": 3, "items": ["a", "b"], "text": ["line one", "line two"]}]
    assert sample._records("x", "t", rows, ("text", "items", "n"), lists=("items",)) == (
        ("line one\nline two", ("a", "b"), 3),
    )


def test_a_table_row_with_a_wrong_field_names_the_file_table_row_and_fields() -> None:
    rows = [{"prompt": "p", "good": "g"}, {"prompt": "p", "godo": "g"}]
    expected = "sample table file coding.json: bank[1] has fields ['godo', 'prompt']; expected "
    with pytest.raises(MissingError, match=re.escape(expected)):
        sample._records("coding", "bank", rows, ("prompt", "good"))


def test_a_missing_table_file_says_to_reinstall() -> None:
    with pytest.raises(MissingError, match=r"^sample table file nowhere\.json is missing") as e:
        sample._file("nowhere")
    assert "reinstall preftune" in e.value.hints[0]
