"""Deterministic sample preference data.

``preftune sample`` writes these records so users can see the shape of data preftune expects,
and the tiny end-to-end training runs learn from them. Each record pairs a prompt with two to
four responses ranked best first: the best answer is helpful, correct, specific and polite,
while the others are, from mildest to worst, too short, vague, off-topic, factually wrong or
dismissive. That ordering is the same in every record, so a small model can learn it.

Prompts come from a hand-written bank plus slot-filled templates (languages and tasks, places
and seasons, amounts and rates, ...) whose answers are built from the same slots, so large
datasets stay varied and on-topic. Everything is drawn from one ``random.Random(seed)`` stream
that is consumed the same way per record, so the first k records do not depend on how many are
requested.

The text (the bank, the template slots, the fixed answers) is package data: ``tables/*.json``
beside this module, ``common.json`` plus one file per category, read once. This module holds
the code that fills the templates and ranks the answers.
"""

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import combinations
from math import gcd
from typing import Any, TypeVar

from preftune.errors import MissingError

__all__ = ["CATEGORIES", "SampleRecord", "generate_samples", "iter_samples"]

CATEGORIES: tuple[str, ...] = (
    "coding",
    "science",
    "cooking",
    "travel",
    "health",
    "finance",
    "writing",
    "history",
)


@dataclass(frozen=True)
class SampleRecord:
    """One prompt with its responses ranked best first, worst last."""

    prompt: str
    responses: tuple[str, ...]
    category: str
    system: str | None = None


_T = TypeVar("_T")
_Rand = Callable[[], float]
# prompt, good answer, then the bad answers that depend on the prompt: too short, vague, wrong
_Parts = tuple[str, str, str, str, str]
_Source = Callable[[_Rand], _Parts]
# (prompt, good, short, wrong) for the hand-written bank; vague answers come from a pool
_BankItem = tuple[str, str, str, str]


def _pick(rand: _Rand, seq: Sequence[_T]) -> _T:
    # Faster than Random.choice and just as deterministic for a given stream.
    return seq[int(rand() * len(seq))]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _money(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


@cache
def _file(name: str) -> dict[str, Any]:
    """The table file ``tables/<name>.json`` of this package, parsed once per process."""
    resource = resources.files("preftune.data") / "tables" / f"{name}.json"
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingError(f"sample table file {name}.json is missing from the preftune package",
                           ["reinstall preftune: the tables ship as package data"]) from None
    return json.loads(text)


def _table_error(name: str, where: str, problem: str) -> MissingError:
    return MissingError(f"sample table file {name}.json: {where} {problem}",
                        [f"fix preftune/data/tables/{name}.json, or reinstall preftune"])


def _table(name: str, key: str) -> Any:
    tables = _file(name)
    if key not in tables:
        raise _table_error(name, f"table {key!r}", "is missing")
    return tables[key]


def _unwrap(value: Any) -> Any:
    # A text with line breaks (code, numbered steps) is written in the file as its list of lines.
    return "\n".join(value) if isinstance(value, list) else value


def _string(name: str, key: str) -> str:
    return _unwrap(_table(name, key))


def _strings(name: str, key: str) -> tuple[str, ...]:
    return tuple(_unwrap(text) for text in _table(name, key))


def _records(
    name: str, where: str, rows: list[dict[str, Any]], fields: tuple[str, ...],
    lists: tuple[str, ...] = (),
) -> Any:
    """``rows`` (JSON objects) as tuples of their ``fields`` in that order.

    The ``lists`` fields become tuples of texts; any other field is a text or a number.
    """
    records = []
    for i, row in enumerate(rows):
        if set(row) != set(fields):
            raise _table_error(name, f"{where}[{i}]",
                               f"has fields {sorted(row)}; expected {list(fields)}")
        records.append(tuple(tuple(row[f]) if f in lists else _unwrap(row[f]) for f in fields))
    return tuple(records)


def _rows(name: str, key: str, fields: tuple[str, ...], lists: tuple[str, ...] = ()) -> Any:
    """The table ``key`` of ``tables/<name>.json``: see :func:`_records`."""
    return _records(name, key, _table(name, key), fields, lists)


_DISMISSIVE: tuple[str, ...] = _strings("common", "dismissive")
_GENERIC_SYSTEM: tuple[str, ...] = _strings("common", "generic_system")
# Mostly empty, so about 30% of prompts get an opener and 25% a closing remark.
_PREFIXES: tuple[str, ...] = ("",) * 16 + _strings("common", "prefixes")
_SUFFIXES: tuple[str, ...] = ("",) * 12 + _strings("common", "suffixes")
_SYSTEM_RATE = 0.15

# Each category's file: a system prompt, vague answers, answers that are off-topic for every
# other category, and the hand-written bank.
_CATEGORY_SYSTEM: dict[str, str] = {c: _string(c, "system") for c in CATEGORIES}
_VAGUE_BY_CATEGORY: dict[str, tuple[str, ...]] = {c: _strings(c, "vague") for c in CATEGORIES}
_OFF_TOPIC_BY_CATEGORY: dict[str, tuple[str, ...]] = {
    c: _strings(c, "off_topic") for c in CATEGORIES
}
_BANK: dict[str, tuple[_BankItem, ...]] = {
    c: _rows(c, "bank", ("prompt", "good", "short", "wrong")) for c in CATEGORIES
}


def _bank_source(items: tuple[_BankItem, ...], vague: tuple[str, ...]) -> _Source:
    def source(rand: _Rand) -> _Parts:
        prompt, good, short, wrong = _pick(rand, items)
        return prompt, good, short, _pick(rand, vague), wrong

    return source


_LANGUAGES = _strings("coding", "languages")


def _code_tasks() -> tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]:
    tasks = []
    rows = _rows("coding", "code_tasks", ("task", "wrong", "answers"))
    for i, (task, wrong, answers) in enumerate(rows):
        where = f"code_tasks[{i}].answers"
        if set(answers) != set(_LANGUAGES):
            raise _table_error("coding", where,
                               f"has {sorted(answers)}; expected one per language {_LANGUAGES}")
        cells = [answers[language] for language in _LANGUAGES]
        tasks.append((task, wrong, _records("coding", where, cells, ("short", "good"))))
    return tuple(tasks)


# task, wrong answer (with {language}), then (too short, good) per language in _LANGUAGES order
_CODE_TASKS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = _code_tasks()

_CODE_PROMPTS = _strings("coding", "code_prompts")
_CODE_VAGUE = _strings("coding", "code_vague")


def _code_entries() -> tuple[tuple[tuple[str, ...], str, str, tuple[str, ...], str], ...]:
    entries = []
    for task, wrong, cells in _CODE_TASKS:
        for language, (short, good) in zip(_LANGUAGES, cells, strict=True):
            prompts = tuple(p.format(task=task, language=language) for p in _CODE_PROMPTS)
            vague = tuple(v.format(task=task, language=language) for v in _CODE_VAGUE)
            entries.append((prompts, good, short, vague, wrong.format(language=language)))
    return tuple(entries)


_CODE_ENTRIES = _code_entries()


def _coding_howto(rand: _Rand) -> _Parts:
    prompts, good, short, vague, wrong = _pick(rand, _CODE_ENTRIES)
    return _pick(rand, prompts), good, short, _pick(rand, vague), wrong


# code, reason phrase, meaning, practical note
_HTTP_CODES: tuple[tuple[int, str, str, str], ...] = _rows(
    "coding", "http_codes", ("code", "name", "meaning", "note")
)
_HTTP_CLASSES: dict[int, str] = {
    int(digit): text for digit, text in _table("coding", "http_classes").items()
}
_HTTP_PROMPTS = _strings("coding", "http_prompts")
_HTTP_VAGUE = _string("coding", "http_vague")


def _http_entries() -> tuple[tuple[int, tuple[str, ...], str, str, str], ...]:
    entries = []
    for code, name, meaning, note in _HTTP_CODES:
        prompts = tuple(p.format(code=code) for p in _HTTP_PROMPTS)
        good = (
            f"{code} {name} means {meaning}. {note} "
            f"Status codes in the {code // 100}xx range {_HTTP_CLASSES[code // 100]}."
        )
        entries.append((code, prompts, good, f'{code} means "{name}."', meaning))
    return tuple(entries)


_HTTP_ENTRIES = _http_entries()


def _coding_http(rand: _Rand) -> _Parts:
    count = len(_HTTP_ENTRIES)
    index = int(rand() * count)
    code, prompts, good, short, _ = _HTTP_ENTRIES[index]
    # Another code's meaning presented as this one's: plausible-sounding but always wrong.
    other = _HTTP_ENTRIES[(index + 1 + int(rand() * (count - 1))) % count][4]
    return _pick(rand, prompts), good, short, _HTTP_VAGUE, f"{code} means {other}."


# task, good, too short
_GIT_TASKS: tuple[tuple[str, str, str], ...] = _rows(
    "coding", "git_tasks", ("task", "good", "short")
)
_GIT_PROMPTS = _strings("coding", "git_prompts")
_GIT_VAGUE = _string("coding", "git_vague")
_GIT_WRONG = _strings("coding", "git_wrong")
_GIT_ENTRIES = tuple(
    (tuple(p.format(task=task) for p in _GIT_PROMPTS), good, short)
    for task, good, short in _GIT_TASKS
)


def _coding_git(rand: _Rand) -> _Parts:
    prompts, good, short = _pick(rand, _GIT_ENTRIES)
    return _pick(rand, prompts), good, short, _GIT_VAGUE, _pick(rand, _GIT_WRONG)


# concept, explanation for a child, explanation for an older audience, too short, wrong
_CONCEPTS: tuple[tuple[str, str, str, str, str], ...] = _rows(
    "science", "concepts", ("concept", "simple", "detailed", "short", "wrong")
)
_YOUNG_AUDIENCES = _strings("science", "young_audiences")
_OLDER_AUDIENCES = _strings("science", "older_audiences")
_CONCEPT_PROMPTS = _strings("science", "concept_prompts")
_YOUNG_OPENERS = _strings("science", "young_openers")
_OLDER_OPENERS = _strings("science", "older_openers")


def _concept_entries() -> tuple[tuple[tuple[str, ...], tuple[str, ...], str, str, str], ...]:
    entries = []
    for concept, simple, detailed, short, wrong in _CONCEPTS:
        vague = f"It's hard to explain {concept} simply; it's a complicated topic."
        for audiences, text, openers in (
            (_YOUNG_AUDIENCES, simple, _YOUNG_OPENERS),
            (_OLDER_AUDIENCES, detailed, _OLDER_OPENERS),
        ):
            prompts = tuple(
                p.format(concept=concept, audience=a) for p in _CONCEPT_PROMPTS for a in audiences
            )
            goods = tuple(o + text for o in openers)
            entries.append((prompts, goods, short, vague, wrong))
    return tuple(entries)


_CONCEPT_ENTRIES = _concept_entries()


def _science_concept(rand: _Rand) -> _Parts:
    prompts, goods, short, vague, wrong = _pick(rand, _CONCEPT_ENTRIES)
    return _pick(rand, prompts), _pick(rand, goods), short, vague, wrong


# from unit, to unit, factor, quick tip
_CONVERSIONS: tuple[tuple[str, str, float, str], ...] = _rows(
    "science", "conversions", ("from", "to", "factor", "tip")
)
_CONVERSION_PROMPTS = _strings("science", "conversion_prompts")
_CONVERSION_VAGUE = _string("science", "conversion_vague")
_TEMPERATURE_PROMPTS_C = _strings("science", "temperature_prompts_c")
_TEMPERATURE_PROMPTS_F = _strings("science", "temperature_prompts_f")


def _science_units(rand: _Rand) -> _Parts:
    if rand() < 0.25:
        return _temperature(rand)
    frm, to, factor, tip = _pick(rand, _CONVERSIONS)
    x = 2 + int(rand() * 499)
    result = f"{x * factor:,.2f}"
    prompt = _pick(rand, _CONVERSION_PROMPTS).format(x=x, frm=frm, to=to)
    good = (
        f"To convert {frm} to {to}, multiply by {factor}. So {x} {frm} × {factor} ≈ "
        f"{result} {to}. {tip}"
    )
    # Dividing instead of multiplying is the classic conversion slip.
    wrong = f"{x} {frm} is {x / factor:,.2f} {to}; you just divide by {factor}."
    return prompt, good, f"About {result} {to}.", _CONVERSION_VAGUE, wrong


def _temperature(rand: _Rand) -> _Parts:
    if rand() < 0.5:
        c = int(rand() * 111) - 20
        f = c * 9 / 5 + 32
        prompt = _pick(rand, _TEMPERATURE_PROMPTS_C).format(x=c)
        good = (
            f"Use the formula °F = °C × 9/5 + 32. So {c} × 9/5 + 32 = {f:g}°F. "
            "As a reference point, water freezes at 0°C (32°F) and boils at 100°C (212°F) "
            "at sea level."
        )
        short = f"{f:g}°F."
        # Doubling without adding 32 never matches the true value in this range.
        wrong = f"Just double it: {c}°C is {2 * c}°F."
    else:
        fahrenheit = int(rand() * 181) - 20
        if fahrenheit == 32:
            # "Subtract 32" happens to be right at the freezing point.
            fahrenheit = 50
        celsius = (fahrenheit - 32) * 5 / 9
        prompt = _pick(rand, _TEMPERATURE_PROMPTS_F).format(x=fahrenheit)
        good = (
            f"Use the formula °C = (°F − 32) × 5/9. So ({fahrenheit} − 32) × 5/9 ≈ "
            f"{celsius:.1f}°C. As a reference point, normal body temperature is about "
            "98.6°F (37°C)."
        )
        short = f"About {celsius:.1f}°C."
        wrong = f"Just subtract 32: {fahrenheit}°F is {fahrenheit - 32}°C."
    return prompt, good, short, _CONVERSION_VAGUE, wrong


# planet, good answer, signature fact (unique to that planet)
_PLANETS: tuple[tuple[str, str, str], ...] = _rows(
    "science", "planets", ("planet", "good", "signature")
)
_PLANET_PROMPTS = _strings("science", "planet_prompts")


def _science_planet(rand: _Rand) -> _Parts:
    count = len(_PLANETS)
    index = int(rand() * count)
    planet, good, signature = _PLANETS[index]
    other = _PLANETS[(index + 1 + int(rand() * (count - 1))) % count][2]
    prompt = _pick(rand, _PLANET_PROMPTS).format(planet=planet)
    vague = f"{planet} is one of the planets. It's pretty far away and interesting in its own way."
    return prompt, good, f"{planet} is {signature}.", vague, f"{planet} is {other}."


# dish, ingredient, amount, unit ("" for a count)
_DISHES: tuple[tuple[str, str, int, str], ...] = _rows(
    "cooking", "dishes", ("dish", "ingredient", "amount", "unit")
)
_BASE_SERVINGS = (2, 4, 6, 8)
_SCALE_PROMPTS = _strings("cooking", "scale_prompts")


def _amount(value: float, unit: str, ingredient: str) -> str:
    if unit:
        rounded = round(value / 5) * 5 if value >= 20 else round(value)
        return f"{rounded:,} {unit} of {ingredient}"
    # Whole items are rounded to the nearest half, which is as precise as a cook can measure.
    halves = max(1, round(value * 2))
    if halves == 2:
        return f"1 {ingredient.removesuffix('s')}"
    return f"{halves / 2:g} {ingredient}"


def _cooking_scale(rand: _Rand) -> _Parts:
    dish, ingredient, amount, unit = _pick(rand, _DISHES)
    m = _pick(rand, _BASE_SERVINGS)
    n = 2 + int(rand() * 23)
    if n == m:
        n += 2
    factor = n / m
    divisor = gcd(n, m)
    up, down = n // divisor, m // divisor
    ratio = f"{up}" if down == 1 else f"{up}/{down}, or about {factor:.2f}"
    prompt = _pick(rand, _SCALE_PROMPTS).format(dish=dish, m=m, n=n)
    example = (
        f"the {_amount(amount, unit, ingredient)} {'becomes' if unit else 'become'} about "
        f"{_amount(amount * factor, unit, ingredient)}"
    )
    if factor > 1:
        advice = (
            "Use a bigger pan or cook in batches, and check for doneness rather than relying on "
            "the original time, since a deeper dish takes longer. Scale salt and strong spices a "
            "little conservatively and adjust to taste."
        )
    else:
        advice = (
            "Use a smaller pan so the food isn't spread too thin, keep the oven temperature the "
            "same, and start checking for doneness a little earlier."
        )
    if ingredient == "eggs":
        advice += (
            " If you end up with part of an egg, beat it and measure out the fraction you need."
        )
    good = f"Multiply every ingredient by {ratio}. For example, {example}. {advice}"
    # The inverted ratio: a typical slip that shrinks the dish when it should grow, or vice versa.
    inverted = f"{down}" if up == 1 else f"{down}/{up}"
    wrong_amount = _amount(amount / factor, unit, ingredient)
    wrong = f"Multiply everything by {inverted}, so you'd use {wrong_amount}."
    short = f"Multiply each ingredient by {ratio.split(',')[0]}."
    vague = "Just eyeball it and add a bit more or less of everything until it looks right."
    return prompt, good, short, vague, wrong


# food, °F, °C, note
_SAFE_TEMPS: tuple[tuple[str, int, int, str], ...] = _rows(
    "cooking", "safe_temps", ("food", "fahrenheit", "celsius", "note")
)
_SAFE_TEMP_PROMPTS = _strings("cooking", "safe_temp_prompts")


def _safe_temp_entries() -> tuple[tuple[tuple[str, ...], str, str, str], ...]:
    entries = []
    for food, fahrenheit, celsius, note in _SAFE_TEMPS:
        subject = _cap(food)
        good = (
            f"{subject} should reach an internal temperature of {fahrenheit}°F ({celsius}°C). "
            f"{note} Use an instant-read thermometer, because color alone isn't a reliable sign "
            "of doneness."
        )
        low_f = fahrenheit - 35
        low_c = round((low_f - 32) * 5 / 9)
        wrong = (
            f"{subject} is safe at {low_f}°F ({low_c}°C); if it looks done on the outside, it's "
            "done."
        )
        prompts = tuple(p.format(food=food) for p in _SAFE_TEMP_PROMPTS)
        entries.append((prompts, good, f"{fahrenheit}°F ({celsius}°C).", wrong))
    return tuple(entries)


_SAFE_TEMP_ENTRIES = _safe_temp_entries()
_SAFE_TEMP_VAGUE = _string("cooking", "safe_temp_vague")


def _cooking_temp(rand: _Rand) -> _Parts:
    prompts, good, short, wrong = _pick(rand, _SAFE_TEMP_ENTRIES)
    return _pick(rand, prompts), good, short, _SAFE_TEMP_VAGUE, wrong


# ingredient, dishes it is used in, good, too short, wrong
_SUBSTITUTES: tuple[tuple[str, tuple[str, ...], str, str, str], ...] = _rows(
    "cooking", "substitutes", ("ingredient", "dishes", "good", "short", "wrong"), lists=("dishes",)
)
_SUBSTITUTE_PROMPTS = _strings("cooking", "substitute_prompts")
_SUBSTITUTE_VAGUE = _string("cooking", "substitute_vague")
_SUBSTITUTE_ENTRIES = tuple(
    (
        tuple(p.format(ingredient=i, dish=d) for p in _SUBSTITUTE_PROMPTS for d in dishes),
        good,
        short,
        wrong,
    )
    for i, dishes, good, short, wrong in _SUBSTITUTES
)


def _cooking_substitute(rand: _Rand) -> _Parts:
    prompts, good, short, wrong = _pick(rand, _SUBSTITUTE_ENTRIES)
    return _pick(rand, prompts), good, short, _SUBSTITUTE_VAGUE, wrong


# place, season, conditions, things to pack, wrong claim
_TRIPS: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = _rows(
    "travel", "trips", ("place", "season", "conditions", "items", "wrong"), lists=("items",)
)
_PACKING_PROMPTS = _strings("travel", "packing_prompts")
_PACKING_VAGUE = _strings("travel", "packing_vague")


def _packing_entries() -> tuple[tuple[str, str, str, str, str, str], ...]:
    entries = []
    for place, season, conditions, items, wrong in _TRIPS:
        steps = "\n".join(f"{i}. {_cap(item)}" for i, item in enumerate(items, start=1))
        short = f"Pack {items[0]} and {items[1]}."
        entries.append((place, season, conditions, steps, short, wrong))
    return tuple(entries)


_PACKING_ENTRIES = _packing_entries()


def _travel_packing(rand: _Rand) -> _Parts:
    place, season, conditions, steps, short, wrong = _pick(rand, _PACKING_ENTRIES)
    n = 3 + int(rand() * 12)
    prompt = _pick(rand, _PACKING_PROMPTS).format(n=n, place=place, season=season)
    if n > 7:
        amount = f"For {n} days, pack clothes for about a week and plan to do laundry once."
    else:
        amount = f"For {n} days, bring {n} days' worth of underwear and socks plus a spare set."
    good = (
        f"{conditions} I'd pack:\n{steps}\n{amount} Check the forecast a few days before you leave."
    )
    return prompt, good, short, _pick(rand, _PACKING_VAGUE), wrong


# city, six sights, tip
_CITIES: tuple[tuple[str, tuple[str, ...], str], ...] = _rows(
    "travel", "cities", ("city", "sights", "tip"), lists=("sights",)
)
_ITINERARY_PROMPTS = _strings("travel", "itinerary_prompts")


def _travel_itinerary(rand: _Rand) -> _Parts:
    count = len(_CITIES)
    index = int(rand() * count)
    city, sights, tip = _CITIES[index]
    other_sights = _CITIES[(index + 1 + int(rand() * (count - 1))) % count][1]
    n = 2 + int(rand() * 2)
    start = int(rand() * 6)
    order = [sights[(start + i) % 6] for i in range(2 * n)]
    days = "\n".join(
        f"Day {d + 1}: {_cap(order[2 * d])} in the morning, then {order[2 * d + 1]} in the "
        "afternoon."
        for d in range(n)
    )
    prompt = _pick(rand, _ITINERARY_PROMPTS).format(n=n, city=city)
    good = f"Here's a relaxed {n}-day plan for {city}:\n{days}\n{tip}"
    short = f"See {order[0]} and {order[1]}."
    wrong = (
        f"In {city}, start with {other_sights[0]}, then see {other_sights[1]}; they're the "
        "city's top sights."
    )
    vague = f"{city} has lots to see. Just walk around and you'll find things to do."
    return prompt, good, short, vague, wrong


# activity, plan, too short, wrong
_ACTIVITIES: tuple[tuple[str, str, str, str], ...] = _rows(
    "health", "activities", ("activity", "plan", "short", "wrong")
)
# how the user describes themselves, a tip that fits
_PEOPLE: tuple[tuple[str, str], ...] = _rows("health", "people", ("who", "tip"))
_ACTIVITY_PROMPTS = _strings("health", "activity_prompts")
_DOCTOR_NOTE = _string("health", "doctor_note")
_ACTIVITY_VAGUE = _string("health", "activity_vague")


def _health_activity(rand: _Rand) -> _Parts:
    activity, plan, short, wrong = _pick(rand, _ACTIVITIES)
    who, tip = _pick(rand, _PEOPLE)
    prompt = _pick(rand, _ACTIVITY_PROMPTS).format(activity=activity, who=who)
    return prompt, f"{plan} {tip} {_DOCTOR_NOTE}", short, _ACTIVITY_VAGUE, wrong


# the user's problem, a targeted tip, too short
_SLEEP_PROBLEMS: tuple[tuple[str, str, str], ...] = _rows(
    "health", "sleep_problems", ("problem", "tip", "short")
)
_SLEEP_PROMPTS = _strings("health", "sleep_prompts")
_SLEEP_HABITS = _string("health", "sleep_habits")
_SLEEP_WRONG = _strings("health", "sleep_wrong")
_SLEEP_VAGUE = _string("health", "sleep_vague")
_SLEEP_ENTRIES = tuple(
    (
        tuple(p.format(problem=problem, Problem=_cap(problem)) for p in _SLEEP_PROMPTS),
        f"{tip} {_SLEEP_HABITS}",
        short,
    )
    for problem, tip, short in _SLEEP_PROBLEMS
)


def _health_sleep(rand: _Rand) -> _Parts:
    prompts, good, short = _pick(rand, _SLEEP_ENTRIES)
    return _pick(rand, prompts), good, short, _SLEEP_VAGUE, _pick(rand, _SLEEP_WRONG)


# situation, good, too short, wrong
_FIRST_AID: tuple[tuple[str, str, str, str], ...] = _rows(
    "health", "first_aid", ("situation", "good", "short", "wrong")
)
_FIRST_AID_PROMPTS = _strings("health", "first_aid_prompts")
_FIRST_AID_VAGUE = _string("health", "first_aid_vague")
_FIRST_AID_ENTRIES = tuple(
    (tuple(p.format(situation=situation) for p in _FIRST_AID_PROMPTS), good, short, wrong)
    for situation, good, short, wrong in _FIRST_AID
)


def _health_first_aid(rand: _Rand) -> _Parts:
    prompts, good, short, wrong = _pick(rand, _FIRST_AID_ENTRIES)
    return _pick(rand, prompts), good, short, _FIRST_AID_VAGUE, wrong


_PRINCIPALS = (1000, 2500, 5000, 10000, 20000, 50000)
_RATES = (2, 3, 4, 5, 6, 7, 8)
_COMPOUND_PROMPTS = _strings("finance", "compound_prompts")
_COMPOUND_VAGUE = _string("finance", "compound_vague")


def _finance_compound(rand: _Rand) -> _Parts:
    principal = _pick(rand, _PRINCIPALS)
    rate = _pick(rand, _RATES)
    years = 2 + int(rand() * 29)
    total = round(principal * (1 + rate / 100) ** years * 100)
    simple = round(principal * (1 + rate / 100 * years) * 100)
    prompt = _pick(rand, _COMPOUND_PROMPTS).format(p=principal, r=rate, t=years)
    good = (
        f"With annual compounding, use A = P × (1 + r)^t. Here that's ${principal:,} × "
        f"(1 + {rate / 100:g})^{years}, which comes to about {_money(total)}, so you'd earn about "
        f"{_money(total - principal * 100)} in interest. That assumes the rate stays fixed and you "
        "make no withdrawals; fees, taxes and inflation will reduce your real return."
    )
    wrong = (
        f"You'll have {_money(simple)}, because you just earn {rate}% of ${principal:,} each year."
    )
    return prompt, good, f"About {_money(total)}.", _COMPOUND_VAGUE, wrong


_GOALS = (3000, 5000, 8000, 10000, 15000, 20000, 25000)
_MONTHS = (6, 9, 10, 15, 18, 24, 30, 36, 48)
_PURPOSES = _strings("finance", "purposes")
_SAVING_PROMPTS = _strings("finance", "saving_prompts")
_SAVING_VAGUE = _string("finance", "saving_vague")


def _finance_savings(rand: _Rand) -> _Parts:
    goal = _pick(rand, _GOALS)
    months = _pick(rand, _MONTHS)
    purpose = _pick(rand, _PURPOSES)
    monthly = round(goal * 100 / months)
    weekly = round(goal * 100 * 12 / (months * 52))
    prompt = _pick(rand, _SAVING_PROMPTS).format(goal=goal, purpose=purpose, months=months)
    good = (
        f"Divide the goal by the number of months: ${goal:,} ÷ {months} "
        f"{'=' if goal * 100 % months == 0 else '≈'} {_money(monthly)} a "
        f"month, or about {_money(weekly)} a week. Setting up an automatic transfer on payday "
        "makes "
        "it much easier to stay on track. If you keep the money in a high-yield savings account, "
        "the interest will get you there a little sooner."
    )
    wrong = (
        f"Divide the goal by 12: {_money(round(goal * 100 / 12))} a month will get you there in "
        f"{months} months."
    )
    return prompt, good, f"About {_money(monthly)} a month.", _SAVING_VAGUE, wrong


_TIP_PERCENTS = (10, 15, 18, 20, 22, 25)
_CENTS = (0, 25, 40, 50, 60, 75, 80, 95, 99)
_TIP_PROMPTS = _strings("finance", "tip_prompts")
_TIP_VAGUE = _string("finance", "tip_vague")


def _finance_tip(rand: _Rand) -> _Parts:
    percent = _pick(rand, _TIP_PERCENTS)
    bill = (12 + int(rand() * 239)) * 100 + _pick(rand, _CENTS)
    tip = round(bill * percent / 100)
    bill_text = _money(bill)
    article = "an" if percent == 18 else "a"  # the only rate in _TIP_PERCENTS read with "an"
    prompt = _pick(rand, _TIP_PROMPTS).format(a=article, p=percent, bill=bill_text)
    good = (
        f"{_cap(article)} {percent}% tip on {bill_text} is {_money(tip)}, which makes the total "
        f"{_money(bill + tip)}. To check it in your head, 10% of {bill_text} is "
        f"{_money(round(bill / 10))}, and you can scale from there."
    )
    wrong_tip = round(bill * percent / 1000)
    wrong = (
        f"{_cap(article)} {percent}% tip on {bill_text} is {_money(wrong_tip)}, so the total is "
        f"{_money(bill + wrong_tip)}."
    )
    return prompt, good, f"It's {_money(tip)}.", _TIP_VAGUE, wrong


# wordy sentence, concise rewrite
_WORDY: tuple[tuple[str, str], ...] = _rows("writing", "wordy", ("wordy", "concise"))
_CONCISE_PROMPTS = _strings("writing", "concise_prompts")
_CONCISE_NOTES = _strings("writing", "concise_notes")
_CONCISE_VAGUE = _string("writing", "concise_vague")


def _concise_entries() -> tuple[tuple[tuple[str, ...], tuple[str, ...], str, str], ...]:
    entries = []
    for wordy, concise in _WORDY:
        before, after = len(wordy.split()), len(concise.split())
        prompts = tuple(p.format(s=wordy) for p in _CONCISE_PROMPTS)
        goods = tuple(
            "Here's a more concise version:\n"
            f'"{concise}"\n'
            f"{note} That takes it from {before} words to {after}."
            for note in _CONCISE_NOTES
        )
        # Offered as "more concise" but longer than the original.
        wrong = f'A more concise version would be: "Basically, {wordy[0].lower()}{wordy[1:]}"'
        entries.append((prompts, goods, f'"{concise}"', wrong))
    return tuple(entries)


_CONCISE_ENTRIES = _concise_entries()


def _writing_concise(rand: _Rand) -> _Parts:
    prompts, goods, short, wrong = _pick(rand, _CONCISE_ENTRIES)
    return _pick(rand, prompts), _pick(rand, goods), short, _CONCISE_VAGUE, wrong


# what the email is for, three subject lines, tip
_EMAILS: tuple[tuple[str, tuple[str, str, str], str], ...] = _rows(
    "writing", "emails", ("purpose", "subjects", "tip"), lists=("subjects",)
)
_EMAIL_PROMPTS = _strings("writing", "email_prompts")
_EMAIL_WRONG = _string("writing", "email_wrong")
_EMAIL_VAGUE = _string("writing", "email_vague")


def _email_entries() -> tuple[tuple[tuple[str, ...], str, str], ...]:
    entries = []
    for purpose, (a, b, c), tip in _EMAILS:
        good = (
            f"Here are a few options:\n1. {a}\n2. {b}\n3. {c}\nKeep subject lines short and "
            f"specific, ideally under about 50 characters, so they aren't cut off on phones. {tip}"
        )
        prompts = tuple(p.format(purpose=purpose) for p in _EMAIL_PROMPTS)
        entries.append((prompts, good, f'"{a}"'))
    return tuple(entries)


_EMAIL_ENTRIES = _email_entries()


def _writing_email(rand: _Rand) -> _Parts:
    prompts, good, short = _pick(rand, _EMAIL_ENTRIES)
    return _pick(rand, prompts), good, short, _EMAIL_VAGUE, _EMAIL_WRONG


# document, good, too short, wrong
_DOCUMENTS: tuple[tuple[str, str, str, str], ...] = _rows(
    "writing", "documents", ("document", "good", "short", "wrong")
)
_DOCUMENT_PROMPTS = _strings("writing", "document_prompts")
_DOCUMENT_VAGUE = _string("writing", "document_vague")
_DOCUMENT_ENTRIES = tuple(
    (tuple(p.format(doc=doc) for p in _DOCUMENT_PROMPTS), good, short, wrong)
    for doc, good, short, wrong in _DOCUMENTS
)


def _writing_document(rand: _Rand) -> _Parts:
    prompts, good, short, wrong = _pick(rand, _DOCUMENT_ENTRIES)
    return _pick(rand, prompts), good, short, _DOCUMENT_VAGUE, wrong


# event, year, when it happened, why it matters
_EVENTS: tuple[tuple[str, int, str, str], ...] = _rows(
    "history", "events", ("event", "year", "when", "why")
)
_EVENT_PROMPTS = _strings("history", "event_prompts")
_EVENT_VAGUE = _string("history", "event_vague")
_YEAR_ERRORS = (30, 50, 70, 100, 150)
_EVENT_ENTRIES = tuple(
    (
        tuple(p.format(event=event) for p in _EVENT_PROMPTS),
        f"{_cap(event)} happened {when}. {why}",
        f"In {year}.",
        _cap(event),
        year,
    )
    for event, year, when, why in _EVENTS
)


def _history_event(rand: _Rand) -> _Parts:
    prompts, good, short, subject, year = _pick(rand, _EVENT_ENTRIES)
    error = _pick(rand, _YEAR_ERRORS)
    wrong_year = year + error if year + error <= 2000 else year - error
    wrong = f"{subject} happened in {wrong_year}, and it didn't really change much."
    return _pick(rand, prompts), good, short, _EVENT_VAGUE, wrong


# name, good, what they are best known for (unique to them)
_PEOPLE_OF_HISTORY: tuple[tuple[str, str, str], ...] = _rows(
    "history", "people", ("name", "good", "known_for")
)
_PERSON_PROMPTS = _strings("history", "person_prompts")


def _history_person(rand: _Rand) -> _Parts:
    count = len(_PEOPLE_OF_HISTORY)
    index = int(rand() * count)
    name, good, known_for = _PEOPLE_OF_HISTORY[index]
    other = _PEOPLE_OF_HISTORY[(index + 1 + int(rand() * (count - 1))) % count][2]
    prompt = _pick(rand, _PERSON_PROMPTS).format(name=name)
    vague = f"{name} was a famous person from history who did a lot of important things."
    short = f"{name} is best known for {known_for}."
    return prompt, good, short, vague, f"{name} is best known for {other}."


_TEMPLATES: dict[str, tuple[_Source, ...]] = {
    "coding": (_coding_howto, _coding_http, _coding_git),
    "science": (_science_concept, _science_units, _science_planet),
    "cooking": (_cooking_scale, _cooking_temp, _cooking_substitute),
    "travel": (_travel_packing, _travel_itinerary),
    "health": (_health_activity, _health_sleep, _health_first_aid),
    "finance": (_finance_compound, _finance_savings, _finance_tip),
    "writing": (_writing_concise, _writing_email, _writing_document),
    "history": (_history_event, _history_person),
}

_SOURCES: tuple[tuple[_Source, ...], ...] = tuple(
    (_bank_source(_BANK[c], _VAGUE_BY_CATEGORY[c]), *_TEMPLATES[c]) for c in CATEGORIES
)
_OFF_TOPIC: tuple[tuple[str, ...], ...] = tuple(
    tuple(text for other in CATEGORIES if other != c for text in _OFF_TOPIC_BY_CATEGORY[other])
    for c in CATEGORIES
)
_SYSTEM: tuple[tuple[str, ...], ...] = tuple(
    _GENERIC_SYSTEM + (_CATEGORY_SYSTEM[c],) * 3 for c in CATEGORIES
)

# Bad answers are ordered short < vague < off-topic < wrong < dismissive; picking index
# combinations in increasing order keeps every record ranked best first.
_BAD_KINDS = 5
_COMBOS_BY_BAD_COUNT: tuple[tuple[tuple[int, ...], ...], ...] = tuple(
    tuple(combinations(range(_BAD_KINDS), k)) for k in (1, 2, 3)
)
# Cumulative probabilities of 2 and 3 responses; the rest get 4.
_TWO_RESPONSES = 0.4
_THREE_RESPONSES = 0.75


_DRAWS = 4


def iter_samples(num_samples: int, seed: int = 0) -> Iterator[SampleRecord]:
    """Yield ``num_samples`` sample records, deterministic for ``(num_samples, seed)``.

    The same arguments always give identical output, and the first k records of
    ``iter_samples(n, s)`` equal those of ``iter_samples(m, s)`` for k <= min(n, m).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    return _generate(num_samples, seed)


def generate_samples(num_samples: int, seed: int = 0) -> list[SampleRecord]:
    """All records of :func:`iter_samples` as a list."""
    return list(iter_samples(num_samples, seed))


def _generate(num_samples: int, seed: int) -> Iterator[SampleRecord]:
    rand = random.Random(seed).random
    seen: set[str] = set()
    for _ in range(num_samples):
        # Redraw a prompt already given, a few times: small samples stay free of repeats,
        # and large ones, which exhaust the distinct prompts, still come out quickly.
        for _attempt in range(_DRAWS):
            record = _draw(rand)
            if record.prompt not in seen:
                break
        seen.add(record.prompt)
        yield record


def _draw(rand: _Rand) -> SampleRecord:
    num_categories = len(CATEGORIES)
    c = int(rand() * num_categories)
    sources = _SOURCES[c]
    prompt, good, short, vague, wrong = sources[int(rand() * len(sources))](rand)
    bad = (short, vague, _pick(rand, _OFF_TOPIC[c]), wrong, _pick(rand, _DISMISSIVE))
    u = rand()
    if u < _TWO_RESPONSES:
        (i,) = _pick(rand, _COMBOS_BY_BAD_COUNT[0])
        responses: tuple[str, ...] = (good, bad[i])
    elif u < _THREE_RESPONSES:
        i, j = _pick(rand, _COMBOS_BY_BAD_COUNT[1])
        responses = (good, bad[i], bad[j])
    else:
        i, j, k = _pick(rand, _COMBOS_BY_BAD_COUNT[2])
        responses = (good, bad[i], bad[j], bad[k])
    prompt = _pick(rand, _PREFIXES) + prompt + _pick(rand, _SUFFIXES)
    system = _pick(rand, _SYSTEM[c]) if rand() < _SYSTEM_RATE else None
    return SampleRecord(prompt, responses, CATEGORIES[c], system)
