"""Reward functions for online RL, picked by name, and the weighted set that scores a group.

Every reward has the signature ``fn(completion: str, answer: str | None, **params) -> float``:
the sampled completion, the item's reference answer (None where the item has none), and its
params as keyword arguments. A reward that also declares a keyword parameter named ``item``
gets the whole dataset row (a mapping), for rewards that need more than the answer::

    from preftune.rl.rewards import build_rewards, score_group

    rewards = build_rewards(["accuracy", {"type": "repetition_penalty", "weight": 0.2,
                                          "params": {"n": 3}}], answer_field="answer")
    totals = score_group(rewards, completions, item)   # one weighted sum per completion
    per_reward = rewards.breakdown(completions[0], item)  # {"accuracy": 1.0, ...}, unweighted

A spec is a registered name (``"length"``), a custom reward as ``"module:function"``, or a
mapping ``{type, weight (default 1.0), params}``. build_rewards checks everything at start-up:
names, param names, param types (against the function's annotations) and values, so that a
typo fails before the first rollout, not after it. The reward functions themselves assume
valid params.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import math
import numbers
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from preftune import settings
from preftune.errors import ConfigError, DataError, GraderError, TrainingError
from preftune.graders import (
    EmbeddingEndpoint,
    Grader,
    GraderSettings,
    ModelEndpoint,
    ScoreModelGrader,
    TextSimilarityGrader,
    check_item,
    grade,
    validate,
    walk,
)

RewardFn = Callable[..., float]
# Raises ValueError, naming the param, for a value of the right type that is still wrong.
ParamCheck = Callable[[Mapping[str, Any]], None]

REWARDS: dict[str, RewardFn] = {}
_CHECKS: dict[str, ParamCheck] = {}


def register(name: str, check: ParamCheck | None = None) -> Callable[[RewardFn], RewardFn]:
    """Decorator: add a reward to REWARDS under ``name``.

    ``check(params)`` gets the params with defaults filled in and raises ValueError for values
    that pass the type check but are still wrong (n=0); build_rewards turns it into a
    ConfigError naming the reward.
    """
    if ":" in name:
        raise ValueError(f"reward name {name!r} contains ':', which marks 'module:function'")

    def decorate(fn: RewardFn) -> RewardFn:
        if name in REWARDS:
            raise ValueError(f"a reward named {name!r} is already registered")
        REWARDS[name] = fn
        if check is not None:
            _CHECKS[name] = check
        return fn

    return decorate


# --- answer extraction ----------------------------------------------------------------------

_BOXED = "\\boxed{"
# An optional sign (not after a word character, so "3-5" holds 3 and 5), then digits with
# optional thousands commas, then an optional decimal part; or a bare ".5".
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_NUMBER_IN_TEXT = re.compile(rf"(?<![\w.])(?:{_NUMBER})")


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}``, nested braces kept; None if none.

    An unclosed ``\\boxed{`` (a truncated completion) is skipped for the one before it.
    """
    start = text.rfind(_BOXED)
    while start != -1:
        depth = 1
        for i in range(start + len(_BOXED), len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start + len(_BOXED):i]
        start = text.rfind(_BOXED, 0, start)
    return None


def after_last_hashes(text: str) -> str | None:
    """GSM8K style: the first line of text after the last ``####``, stripped; None if none."""
    index = text.rfind("####")
    if index == -1:
        return None
    rest = text[index + 4:].strip()
    return rest.splitlines()[0].strip() if rest else ""


def marked_answer(text: str) -> str | None:
    """The answer a text marks as final: the last ``\\boxed{}``, else what follows ``####``."""
    boxed = last_boxed(text)
    return boxed.strip() if boxed is not None else after_last_hashes(text)


def parse_number(text: str) -> float | None:
    """The number a whole string states, or None: "$1,000." → 1000.0, "-0.5" → -0.5."""
    cleaned = text.strip().replace("\\$", "").replace("$", "").strip().rstrip(".").strip()
    if re.fullmatch(_NUMBER, cleaned) is None:
        return None
    return float(cleaned.replace(",", ""))


def last_number(text: str) -> float | None:
    """The last number written anywhere in a text ("... so 1,200 apples." → 1200.0)."""
    found = _NUMBER_IN_TEXT.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def _normalize(text: str) -> str:
    """Whitespace collapsed and a trailing period dropped, for exact comparison."""
    return " ".join(text.split()).rstrip(".")


# --- rewards --------------------------------------------------------------------------------

def _measure(text: str, unit: str) -> int:
    return len(text) if unit == "chars" else len(text.split())


def _check_length(params: Mapping[str, Any]) -> None:
    if params["target"] < 1:
        raise ValueError(f"param 'target' must be at least 1, got {params['target']}")


@register("length", check=_check_length)
def length(completion: str, answer: str | None, *, target: int,
           unit: Literal["chars", "words"] = "chars") -> float:
    """1.0 at the target length, falling linearly to 0 at length 0 and at twice the target.

    reward = max(0, 1 - |L - target| / target), L in characters by default or in
    whitespace-separated words (``unit="words"``). Tokens would need the tokenizer, which a
    reward does not see; words are the tokenizer-free stand-in.
    """
    distance = abs(_measure(completion, unit) - target)
    return max(0.0, 1.0 - distance / target)


def _check_accuracy(params: Mapping[str, Any]) -> None:
    if params["rel_tol"] < 0:
        raise ValueError(f"param 'rel_tol' must be >= 0, got {params['rel_tol']}")


@register("accuracy", check=_check_accuracy)
def accuracy(completion: str, answer: str | None, *, rel_tol: float = 1e-6) -> float:
    """1.0 if the completion's answer matches the reference, else 0.0.

    Both sides are reduced to their marked answer (last ``\\boxed{}``, else after the last
    ``####``), so a full GSM8K solution works as the reference. Without a mark, the reference
    is its stripped text and the completion is its stripped text for the exact comparison and
    its last number for the numeric one. Exact: equal after collapsing whitespace and dropping a
    trailing period. Numeric (when the reference is a number): equal within ``rel_tol``,
    ignoring commas, ``$`` and a trailing period, so "$1,000." matches "1000.0". A marked
    completion answer counts numerically only if it is a number as a whole: ``\\frac{1}{2}``
    does not match "2". Raises DataError if the item has no answer.
    """
    if answer is None:
        raise DataError("the accuracy reward needs a reference answer, but the item has none",
                        ["set answer_field to the dataset column that holds the answer"])
    gold = marked_answer(answer)
    gold_text = answer.strip() if gold is None else gold
    predicted = marked_answer(completion)
    predicted_text = completion.strip() if predicted is None else predicted
    if gold_text and _normalize(predicted_text) == _normalize(gold_text):
        return 1.0
    gold_number = parse_number(gold_text)
    if gold_number is None:
        return 0.0
    number = last_number(completion) if predicted is None else parse_number(predicted_text)
    matched = number is not None and math.isclose(number, gold_number, rel_tol=rel_tol)
    return 1.0 if matched else 0.0


# A reasoning block with content, then a non-empty answer after it.
DEFAULT_FORMAT = r"\s*<think>.+?</think>\s*\S.*"


def _check_format(params: Mapping[str, Any]) -> None:
    try:
        re.compile(params["pattern"])
    except re.error as e:
        raise ValueError(f"param 'pattern' is not a valid regular expression: {e}") from e


@register("format", check=_check_format)
def format_match(completion: str, answer: str | None, *, pattern: str = DEFAULT_FORMAT,
                 mode: Literal["search", "fullmatch"] = "fullmatch") -> float:
    """1.0 if the completion matches ``pattern`` (``re.search`` or ``re.fullmatch``), else 0.0.

    Patterns compile with re.DOTALL, so ``.`` spans lines. The default, in fullmatch mode,
    asks for ``<think>...</think>`` with something inside, then a non-empty answer.
    """
    match = re.search if mode == "search" else re.fullmatch
    return 1.0 if match(pattern, completion, flags=re.DOTALL) else 0.0


def _check_repetition(params: Mapping[str, Any]) -> None:
    if params["n"] < 1:
        raise ValueError(f"param 'n' must be at least 1, got {params['n']}")
    if params["max_penalty"] < 0:
        raise ValueError(f"param 'max_penalty' must be >= 0, got {params['max_penalty']}")


@register("repetition_penalty", check=_check_repetition)
def repetition_penalty(completion: str, answer: str | None, *, n: int = 3,
                       max_penalty: float = 1.0) -> float:
    """A penalty in [-max_penalty, 0] for the share of word n-grams that repeat an earlier one.

    penalty = -max_penalty * (ngrams - distinct ngrams) / ngrams, over lowercased
    whitespace-separated words; 0 for a text with no repeats or fewer than n words.
    """
    words = completion.lower().split()
    if len(words) < n:
        return 0.0
    ngrams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    repeats = len(ngrams) - len(set(ngrams))
    return -max_penalty * repeats / len(ngrams)


def _check_cosine(params: Mapping[str, Any]) -> None:
    if params["max_len"] < 1:
        raise ValueError(f"param 'max_len' must be at least 1, got {params['max_len']}")
    for kind in ("correct", "wrong"):
        low, high = params[f"min_value_{kind}"], params[f"max_value_{kind}"]
        if low > high:
            raise ValueError(f"param 'min_value_{kind}' ({low}) is above "
                             f"'max_value_{kind}' ({high})")
    _check_accuracy(params)


@register("cosine_scaled", check=_check_cosine)
def cosine_scaled(completion: str, answer: str | None, *, min_value_correct: float = 0.5,
                  max_value_correct: float = 1.0, min_value_wrong: float = -1.0,
                  max_value_wrong: float = -0.5, max_len: int = 1000,
                  unit: Literal["chars", "words"] = "chars", rel_tol: float = 1e-6) -> float:
    """Correctness (the accuracy reward) scaled by length on a cosine schedule.

    After the cosine length-scaling reward of Yeo et al. 2025, "Demystifying Long
    Chain-of-Thought Reasoning in LLMs": with c = cos(pi * min(L, max_len) / max_len),
    a correct answer gets min_c + (max_c - min_c) * (1 + c) / 2 (max_c when empty, min_c at
    max_len: shorter is better) and a wrong one max_w + (min_w - max_w) * (1 + c) / 2 (min_w
    when empty, max_w at max_len: a long wrong attempt is penalised less than a short guess).
    Deviation: lengths past max_len are clamped to it; the paper adds a separate
    exceed-length penalty.
    """
    progress = min(_measure(completion, unit), max_len) / max_len
    c = math.cos(math.pi * progress)
    if accuracy(completion, answer, rel_tol=rel_tol) == 1.0:
        return min_value_correct + (max_value_correct - min_value_correct) * (1 + c) / 2
    return max_value_wrong + (min_value_wrong - max_value_wrong) * (1 + c) / 2


def _check_grader(params: Mapping[str, Any]) -> None:
    if bool(params["embedding_base_url"]) != bool(params["embedding_model"]):
        raise ValueError("set params 'embedding_base_url' and 'embedding_model' together")
    for _, inner in walk(params["grader"]):
        if isinstance(inner, TextSimilarityGrader) and inner.evaluation_metric == "cosine" \
                and params["embedding_base_url"] is None:
            raise ValueError(f"grader '{inner.name}' uses evaluation_metric cosine: set params "
                             "'embedding_base_url' (an OpenAI-compatible endpoint, .../v1, "
                             "serving /embeddings) and 'embedding_model', or use another "
                             "metric (fuzzy_match, bleu, rouge_l, ...)")
        if isinstance(inner, ScoreModelGrader) and params["score_model_base_url"] is None:
            raise ValueError(f"grader '{inner.name}' is a score_model grader: set param "
                             "'score_model_base_url' to an OpenAI-compatible endpoint (.../v1)")


@functools.lru_cache(maxsize=8)
def _embedder(base_url: str, model: str, api_key: str | None) -> EmbeddingEndpoint:
    """One embedder per endpoint in this process, so its cache of vectors (the references
    every answer in a group is compared with) lasts across calls."""
    return EmbeddingEndpoint(base_url, model, api_key)


@register("grader", check=_check_grader)
def grader_reward(completion: str, answer: str | None, *, grader: Grader,
                  item: Mapping[str, Any], score_model_base_url: str | None = None,
                  embedding_base_url: str | None = None, embedding_model: str | None = None,
                  allow_python: bool = True, python_timeout_s: float = 10.0,
                  python_memory_mb: int = 256) -> float:
    """An OpenAI grader's score: ``grade(grader, {"output_text": completion}, item)``.

    The grader (``params.grader``: any OpenAI grader object, docs/graders.md) reads the item's
    fields as ``{{item.<field>}}`` and the completion as ``{{sample.output_text}}``; ``answer``
    is not used. An item that lacks a field the grader reads is a DataError; a grader that
    fails on one completion (a python error or timeout, an endpoint that does not answer)
    scores it 0.0, as a training loop wants for one bad sample. Python graders run under
    ``python_timeout_s`` and ``python_memory_mb`` (a service job passes the operator's
    ``graders`` settings). score_model graders call ``score_model_base_url``; cosine
    text_similarity graders embed with ``embedding_model`` at ``embedding_base_url``; their
    bearer keys, if any, are read from PREFTUNE_SCORE_MODEL_API_KEY and
    PREFTUNE_EMBEDDING_API_KEY.
    """
    row = dict(item)
    missing = check_item(grader, row)
    if missing:
        raise DataError(f"grader '{grader.name}' reads {', '.join(missing)}, which the item "
                        f"lacks (its fields: {', '.join(map(str, row)) or 'none'})",
                        ["give every row the fields the grader's {{item.*}} templates name"])
    endpoint = (ModelEndpoint(score_model_base_url, settings.score_model_api_key())
                if score_model_base_url else None)
    embedder = (_embedder(embedding_base_url, embedding_model, settings.embedding_api_key())
                if embedding_base_url and embedding_model else None)
    lent = GraderSettings(allow_python=allow_python, python_timeout_s=python_timeout_s,
                          python_memory_mb=python_memory_mb, score_model_endpoint=endpoint,
                          embedder=embedder)
    return grade(grader, {"output_text": completion}, row, lent, on_error="zero").score


# --- the configured set ---------------------------------------------------------------------

@dataclass(frozen=True)
class RewardTerm:
    """One configured reward: its function, its params bound, and its weight in the sum."""

    label: str
    weight: float
    fn: RewardFn
    params: Mapping[str, Any]
    wants_item: bool = False

    def score(self, completion: str, answer: str | None, item: Mapping[str, Any]) -> float:
        """The unweighted reward; TrainingError if the function returned no number."""
        kwargs = dict(self.params)
        if self.wants_item:
            kwargs["item"] = item
        value = self.fn(completion, answer, **kwargs)
        if not isinstance(value, numbers.Real):
            raise TrainingError(f"reward {self.label!r} returned {value!r} "
                                f"({type(value).__name__}); a reward must return a number",
                                ["fix the reward function to return a float"])
        return float(value)


@dataclass(frozen=True)
class RewardSet:
    """The rewards an environment scores each completion with, summed with their weights."""

    terms: tuple[RewardTerm, ...]
    answer_field: str = "answer"

    @property
    def labels(self) -> list[str]:
        """One per term, unique (a second "format" is "format#2"): keys for logging."""
        return [term.label for term in self.terms]

    def answer_of(self, item: Mapping[str, Any]) -> str | None:
        """The item's reference answer as text; None if the field is missing or null."""
        value = item.get(self.answer_field)
        return None if value is None else str(value)

    def breakdown(self, completion: str, item: Mapping[str, Any]) -> dict[str, float]:
        """Each reward's unweighted value for one completion, keyed by label."""
        answer = self.answer_of(item)
        return {term.label: term.score(completion, answer, item) for term in self.terms}

    def weighted_sum(self, scores: Mapping[str, float]) -> float:
        """Combine a breakdown into the total, so logging and training score only once."""
        return sum(term.weight * scores[term.label] for term in self.terms)

    def __call__(self, completion: str, item: Mapping[str, Any]) -> float:
        return self.weighted_sum(self.breakdown(completion, item))


def score_group(rewards: RewardSet, completions: Sequence[str],
                item: Mapping[str, Any]) -> list[float]:
    """The total reward of each completion sampled for one item."""
    return [rewards(completion, item) for completion in completions]


@register("combined")
def combined(completion: str, answer: str | None, *, rewards: RewardSet,
             item: Mapping[str, Any]) -> float:
    """A weighted sum of other rewards, sum_i w_i * r_i, built from ``params.rewards`` specs.

    Lets one term of a set stand for several, under one label and one outer weight.
    """
    return rewards(completion, item)


def build_rewards(specs: Sequence[str | Mapping[str, Any]],
                  answer_field: str = "answer") -> RewardSet:
    """Validate reward specs and bind them into a RewardSet; ConfigError names the bad spec."""
    return _build(specs, answer_field, "rewards")


def _build(specs: object, answer_field: str, where: str) -> RewardSet:
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        raise ConfigError(f"{where} must be a list of reward specs, got {specs!r}",
                          ["e.g. rewards: [accuracy, {type: length, params: {target: 800}}]"])
    if not specs:
        raise ConfigError(f"{where} is empty: there is nothing to score completions with",
                          [f"name at least one reward: {', '.join(sorted(REWARDS))}"])
    terms: list[RewardTerm] = []
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        name, weight, fn, params, wants_item = _build_term(spec, answer_field, f"{where}[{i}]")
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name}#{seen[name]}"
        terms.append(RewardTerm(label, weight, fn, params, wants_item))
    return RewardSet(tuple(terms), answer_field)


_SPEC_KEYS = ("type", "weight", "params")


def _build_term(spec: object, answer_field: str,
                where: str) -> tuple[str, float, RewardFn, dict[str, Any], bool]:
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be a reward name or a mapping, got {spec!r}",
                          ["e.g. {type: accuracy, weight: 1.0}"])
    extra = [key for key in spec if key not in _SPEC_KEYS]
    if extra:
        raise ConfigError(f"{where} has unknown key {extra[0]!r}",
                          [f"a reward spec has the keys {', '.join(_SPEC_KEYS)}"])
    name = spec.get("type")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} needs 'type': a reward name or 'module:function'",
                          [f"registered rewards: {', '.join(sorted(REWARDS))}"])
    weight = spec.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise ConfigError(f"{where}: weight of reward {name!r} must be a number, got {weight!r}")
    params = spec.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}: params of reward {name!r} must be a mapping, got {params!r}")
    fn = _resolve(name, where)
    bound, wants_item = _bind_params(fn, name, dict(params), answer_field, where)
    return name, float(weight), fn, bound, wants_item


def _resolve(name: str, where: str) -> RewardFn:
    """The registered reward, or the callable a 'module:function' name imports."""
    if name in REWARDS:
        return REWARDS[name]
    if ":" not in name:
        close = difflib.get_close_matches(name, REWARDS, n=1)
        hints = [f"did you mean {close[0]!r}?"] if close else []
        raise ConfigError(f"{where}: unknown reward {name!r}; registered rewards: "
                          f"{', '.join(sorted(REWARDS))}",
                          [*hints, "or give your own as 'module:function', an importable "
                                   "callable fn(completion, answer, **params) -> float"])
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # a missing module, or one that fails while importing
        raise ConfigError(f"{where}: cannot import module {module_name!r} for reward {name!r}: "
                          f"{type(e).__name__}: {e}",
                          ["check the module name, and that its folder is on PYTHONPATH"]) from e
    fn = getattr(module, attr, None)
    if fn is None:
        raise ConfigError(f"{where}: module {module_name!r} has no attribute {attr!r} "
                          f"(reward {name!r})", ["check the function name after the ':'"])
    if not callable(fn):
        raise ConfigError(f"{where}: {name!r} is not callable (it is the "
                          f"{type(fn).__name__} {fn!r})",
                          ["name a callable fn(completion, answer, **params) -> float"])
    return typing.cast(RewardFn, fn)


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _bind_params(fn: RewardFn, name: str, params: dict[str, Any], answer_field: str,
                 where: str) -> tuple[dict[str, Any], bool]:
    """Check params against fn's signature, annotations and check; return them and wants_item."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: accept what is given
        return params, False
    declared = list(signature.parameters.values())
    positional = [p for p in declared if p.kind in _POSITIONAL][:2]
    takes_varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in declared)
    if len(positional) < 2 and not takes_varargs:
        raise ConfigError(f"{where}: reward {name!r} does not take (completion, answer)",
                          ["a reward is fn(completion, answer, **params) -> float"])
    accepted = {p.name: p for p in declared if p not in positional and p.name != "item"
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL,
                                   inspect.Parameter.VAR_KEYWORD)}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in declared)
    item = signature.parameters.get("item")
    wants_item = item is not None and item not in positional
    for key in params:
        if key not in accepted and not takes_any:
            close = difflib.get_close_matches(key, accepted, n=1)
            raise ConfigError(f"{where}: reward {name!r} has no param {key!r}",
                              [*([f"did you mean {close[0]!r}?"] if close else []),
                               f"its params: {', '.join(accepted) or 'none'}"])
    for key, p in accepted.items():
        if key not in params and p.default is inspect.Parameter.empty:
            raise ConfigError(f"{where}: reward {name!r} needs param {key!r}",
                              [f"add params: {{{key}: ...}} to the spec"])
    hints = _type_hints(fn)
    bound = {key: _coerce(value, hints.get(key, Any), answer_field,
                          f"{where}.params.{key}", name) for key, value in params.items()}
    check = _CHECKS.get(name) if REWARDS.get(name) is fn else None
    if check is not None:
        defaults = {key: p.default for key, p in accepted.items()
                    if p.default is not inspect.Parameter.empty}
        try:
            check({**defaults, **bound})
        except ValueError as e:
            raise ConfigError(f"{where}: reward {name!r}: {e}") from e
    return bound, wants_item


def _type_hints(fn: RewardFn) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations on a custom reward: skip the type check
        return {}


_GRADER = typing.get_args(Grader)[0]  # the union of grader models, without its Annotated


class _Mismatch(Exception):
    pass


def _coerce(value: Any, hint: Any, answer_field: str, where: str, name: str) -> Any:
    """``value`` as ``hint`` asks (int → float; specs → RewardSet), or ConfigError."""
    try:
        return _convert(value, hint, answer_field, where)
    except GraderError as e:
        raise ConfigError(f"{e.message} (reward {name!r})", e.hints, e.details) from None
    except _Mismatch:
        raise ConfigError(f"{where} (reward {name!r}) must be {_describe(hint)}, "
                          f"got {value!r} ({type(value).__name__})") from None


def _convert(value: Any, hint: Any, answer_field: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if hint == _GRADER:  # an OpenAI grader object, checked up front
        return value if isinstance(value, typing.get_args(_GRADER)) else validate(value, where)
    if hint is RewardSet:
        if isinstance(value, RewardSet):
            return value
        if isinstance(value, (list, tuple)):
            return _build(value, answer_field, where)
    elif origin is Literal:
        if any(type(value) is type(arg) and value == arg for arg in typing.get_args(hint)):
            return value
    elif origin is typing.Union or origin is types.UnionType:
        for arm in typing.get_args(hint):
            try:
                return _convert(value, arm, answer_field, where)
            except _Mismatch:
                continue
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is None or hint is type(None):
        if value is None:
            return value
    elif isinstance(origin or hint, type):
        if isinstance(value, origin or hint):  # shallow: list[int] checks for a list
            return value
    else:  # a typing construct this check does not know: trust the value
        return value
    raise _Mismatch


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(hint))
    names = {float: "a number", int: "an integer", str: "a string", bool: "true or false",
             type(None): "null", RewardSet: "a list of reward specs"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
