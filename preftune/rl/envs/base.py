"""The environment loop: sample a group per item, score it, and hand it on.

An ``Environment`` knows where its items come from (``next_item``, ``eval_items``); this base
class does the rest, as an Atropos ``BaseEnv`` does:

* ``collect_group(item)`` asks an OpenAI-compatible server for ``group_size`` completions
  (one request with ``n``), tokenizes prompt + completion, scores each completion with the
  reward set and drops what the trainer cannot use (sequences over ``max_token_length``;
  groups whose scores are all equal when ``ensure_scores_are_not_same``).
* ``serve()`` registers with the trajectory API and sends groups to ``/scored_data`` until the
  items run out or the trainer has all the data it asked for.
* ``process(path, num_items)`` writes the groups as JSONL instead, with no trainer.
* ``evaluate()`` scores the eval items and reports the mean of each reward; it sends nothing.

Token conventions are atroposlib's: ``masks`` holds -100 at prompt positions and the token id
at completion positions; ``inference_logprobs`` holds 1.0 at prompt positions.
"""

from __future__ import annotations

import abc
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from preftune.errors import ConfigError, TrainingError
from preftune.fsutil import atomic_path
from preftune.rl.rewards import RewardSet

log = logging.getLogger(__name__)

PROMPT_MASK = -100  # atroposlib: masks hold -100 where the trainer must not learn
PROMPT_LOGPROB = 1.0  # atroposlib: inference_logprobs hold 1.0 at prompt positions
WAIT_FOR_TRAINER = "wait for trainer to start"
RETRY_WAIT_S = 0.5  # first wait before a sampling request is retried; doubles each time
PACE_WAIT_S = 0.2  # between looks at the queue while max_batches_offpolicy batches wait
_TRANSIENT = {404, 429, 500, 502, 503, 504}


class EnvConfig(BaseModel):
    """What every environment needs: sampling, tokenizing, filtering and the trajectory API."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    group_size: int = Field(4, gt=0, description="completions sampled per item")
    max_num_workers: int = Field(4, gt=0, description="items in flight at once")
    rollout_server_url: str = "http://127.0.0.1:8000"
    tokenizer_name: str = "tiny"
    max_token_length: int = Field(2048, gt=0, description="longer sequences are dropped")
    ensure_scores_are_not_same: bool = False
    model_name: str = "tiny"
    base_url: str = "http://127.0.0.1:9001"
    api_key: str | None = None
    timeout: float = Field(600.0, gt=0, description="seconds per sampling request")
    use_chat: bool = False
    max_tokens: int = Field(256, gt=0)
    temperature: float = Field(1.0, ge=0)
    logprobs: bool = True
    wandb_name: str | None = Field(None, description="the name sent to /register-env")
    weight: float = 1.0
    poll_interval: float = Field(1.0, gt=0, description="seconds between /register-env tries")
    request_retries: int = Field(3, ge=0, description="retries of a sampling request that "
                                 "failed to connect or got 404, 429 or 5xx")
    max_batches_offpolicy: int | None = Field(None, gt=0, description="while serving, wait "
                                              "before sampling the next item while this many "
                                              "batches wait for the trainer (none: no wait): "
                                              "groups then come from recent weights")
    eval_every_steps: int | None = Field(None, gt=0, description="while serving, evaluate the "
                                         "eval items at the trainer's first step and every N "
                                         "steps after, each result a row of eval_log")
    eval_log: str | None = Field(None, description="the JSONL file eval_every_steps appends "
                                 "to: step, eval/mean_reward, eval/reward_std, eval/<reward>")
    eval_group_size: int | None = Field(None, gt=0, description="completions sampled per eval "
                                        "item (default: group_size)")


@dataclass(frozen=True)
class Item:
    """One prompt to sample for, with the row it came from (rewards may read any field).
    ``messages``, when set, is the whole chat prompt (an RFT item's conversation); ``prompt``
    is then its last user message, for logs."""

    prompt: str
    row: Mapping[str, Any]
    system: str | None = None
    messages: tuple[Mapping[str, str], ...] | None = None


@dataclass(frozen=True)
class Completion:
    """One sampled choice: its text and, when the server sent them, its token ids and log-probs."""

    text: str
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    finish_reason: str | None = None


@dataclass
class ScoredGroup:
    """A scored group: the wire fields of the trajectory API plus the texts behind them."""

    prompt: str
    system: str | None
    messages: list[dict[str, str]] | None  # the chat prompt, when sampled through chat
    completions: list[str]
    tokens: list[list[int]]
    masks: list[list[int]]
    scores: list[float]
    rewards: list[dict[str, float]]  # unweighted value of each reward, per completion
    inference_logprobs: list[list[float]] | None = None

    def payload(self, env_id: int | None) -> dict[str, Any]:
        """The body of ``POST /scored_data``."""
        body: dict[str, Any] = {"tokens": self.tokens, "masks": self.masks,
                                "scores": self.scores, "env_id": env_id}
        if self.inference_logprobs is not None:
            body["inference_logprobs"] = self.inference_logprobs
        return body

    def record(self) -> dict[str, Any]:
        """One JSONL row of ``process``: the payload and the texts ``to_pairs`` reads."""
        row: dict[str, Any] = {"prompt": self.prompt, "system": self.system}
        if self.messages is not None:
            row["messages"] = self.messages
        row.update(completions=self.completions, rewards=self.rewards, **self.payload(None))
        del row["env_id"]
        return row


@dataclass
class EvalReport:
    """Mean total reward and mean of each reward over every completion of the eval items."""

    items: int = 0
    completions: int = 0
    mean_reward: float = 0.0
    reward_std: float = 0.0
    reward_means: dict[str, float] = field(default_factory=dict)


@dataclass
class _EvalSchedule:
    """When ``serve`` evaluates: at the first step it sees, then every ``every`` steps."""

    every: int | None
    next_step: int | None = None

    def due(self, step: int) -> bool:
        return self.every is not None and (self.next_step is None or step >= self.next_step)

    def done(self, step: int) -> None:
        assert self.every is not None
        self.next_step = (step // self.every + 1) * self.every


@dataclass
class ServeSummary:
    sent: int = 0  # groups the API received
    dropped: int = 0  # items whose group was dropped (equal scores, all too long)
    stopped_by_trainer: bool = False


class Environment(abc.ABC):
    """Items in, scored groups out; subclasses say where items come from."""

    def __init__(self, config: EnvConfig, rewards: RewardSet, tokenizer: Any = None) -> None:
        self.config = config
        self.rewards = rewards
        if tokenizer is None:
            from preftune.models.load import load_tokenizer

            tokenizer = load_tokenizer(config.tokenizer_name)
        self.tokenizer = tokenizer
        if config.use_chat and getattr(tokenizer, "chat_template", None) is None:
            raise ConfigError(f"use_chat is set but tokenizer {config.tokenizer_name!r} has no "
                              "chat template, so the prompt tokens cannot be reproduced",
                              ["set use_chat: false, or pick a tokenizer with a chat template"])
        self._tokenizer_lock = threading.Lock()  # fast tokenizers are not safe across threads
        self._client = httpx.Client(timeout=config.timeout)

    @abc.abstractmethod
    def next_item(self) -> Item | None:
        """The next training item, or None when there are no more."""

    @abc.abstractmethod
    def eval_items(self) -> Iterator[Item]:
        """The items ``evaluate`` scores."""

    def close(self) -> None:
        self._client.close()

    # ---- one group -------------------------------------------------------------------------

    def collect_group(self, item: Item) -> ScoredGroup | None:
        """Sample, tokenize and score one item's group; None if nothing of it is usable."""
        return self.score(item, self.sample(item))

    def score(self, item: Item, completions: list[Completion]) -> ScoredGroup | None:
        """Tokenize and score completions, then drop what the trainer cannot use.

        Sequences longer than ``max_token_length`` are dropped one by one; the group is dropped
        when none is left, or when ``ensure_scores_are_not_same`` and every score is equal
        (GRPO advantages would all be zero).
        """
        messages = self._messages(item) if self.config.use_chat else None
        prompt_ids = self._prompt_ids(item, messages)
        rows = [self.rewards.breakdown(c.text, item.row) for c in completions]
        group = ScoredGroup(item.prompt, item.system, messages, [], [], [], [], [], [])
        logprobs = group.inference_logprobs
        for completion, breakdown in zip(completions, rows, strict=True):
            ids = completion.token_ids
            if ids is None:
                with self._tokenizer_lock:
                    ids = list(self.tokenizer(completion.text, add_special_tokens=False)
                               ["input_ids"])
            tokens = prompt_ids + ids
            if len(tokens) > self.config.max_token_length:
                continue
            group.completions.append(completion.text)
            group.tokens.append(tokens)
            group.masks.append([PROMPT_MASK] * len(prompt_ids) + ids)
            group.scores.append(self.rewards.weighted_sum(breakdown))
            group.rewards.append(breakdown)
            if logprobs is not None and completion.logprobs is not None \
                    and len(completion.logprobs) == len(ids):
                logprobs.append([PROMPT_LOGPROB] * len(prompt_ids) + completion.logprobs)
            else:  # one sequence without them: the API wants all or none
                logprobs = None
        group.inference_logprobs = logprobs
        if not group.tokens:
            return None
        if self.config.ensure_scores_are_not_same and len(set(group.scores)) == 1:
            return None
        return group

    def _messages(self, item: Item) -> list[dict[str, str]]:
        if item.messages is not None:
            given = [dict(m) for m in item.messages]
            has_system = any(m["role"] in ("system", "developer") for m in given)
            system = [{"role": "system", "content": item.system}] \
                if item.system and not has_system else []
            return [*system, *given]
        system = [{"role": "system", "content": item.system}] if item.system else []
        return [*system, {"role": "user", "content": item.prompt}]

    def _prompt_text(self, item: Item) -> str:
        """The completion-API prompt: the system prompt, a blank line, then the prompt."""
        return f"{item.system}\n\n{item.prompt}" if item.system else item.prompt

    def _prompt_ids(self, item: Item, messages: list[dict[str, str]] | None) -> list[int]:
        with self._tokenizer_lock:
            if messages is not None:
                rendered = self.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=True, return_dict=True)
                return list(rendered["input_ids"])
            return list(self.tokenizer(self._prompt_text(item))["input_ids"])

    # ---- sampling --------------------------------------------------------------------------

    def sample(self, item: Item, n: int | None = None) -> list[Completion]:
        """``n`` (default ``group_size``) completions of one prompt, in one request."""
        cfg = self.config
        n = n or cfg.group_size
        # return_token_ids: vLLM then sends the sampled ids, as preftune's server always does,
        # so nothing is tokenized again (text does not always round-trip to the same ids).
        body: dict[str, Any] = {"model": cfg.model_name, "n": n,
                                "max_tokens": cfg.max_tokens, "temperature": cfg.temperature,
                                "return_token_ids": True}
        if cfg.use_chat:
            path, body["messages"] = "/v1/chat/completions", self._messages(item)
            if cfg.logprobs:
                body["logprobs"] = True
        else:
            path, body["prompt"] = "/v1/completions", self._prompt_text(item)
            if cfg.logprobs:
                body["logprobs"] = 1  # the sampled token's log-prob (and the top one)
        url = _api_root(cfg.base_url) + path
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        response = self._post_retrying(url, body, headers)
        if response.status_code != 200:
            raise TrainingError(f"the inference server at {url} answered "
                                f"{response.status_code}: {response.text[:500]}",
                                ["check model_name and the sampling settings"])
        choices = response.json().get("choices") or []
        if len(choices) != n:
            raise TrainingError(f"asked {url} for n={n} completions, got "
                                f"{len(choices)}", ["use a server that supports n > 1"])
        return [_completion(choice, cfg.use_chat) for choice in choices]

    def _post_retrying(self, url: str, body: dict[str, Any], headers: dict[str, str]
                       ) -> httpx.Response:
        """POST, retried on what passes: a server restarting or busy, or a vLLM adapter
        name missing for the moment an older vLLM unloads and loads it again (404)."""
        retries = self.config.request_retries
        for attempt in range(retries + 1):
            try:
                response = self._client.post(url, json=body, headers=headers)
            except httpx.HTTPError as e:
                if attempt == retries:
                    raise TrainingError(f"cannot reach the inference server at {url}: {e}",
                                        ["start it, or set base_url to where it listens"]
                                        ) from e
            else:
                if response.status_code not in _TRANSIENT or attempt == retries:
                    return response
                log.warning("%s answered %s; retrying", url, response.status_code)
            time.sleep(min(RETRY_WAIT_S * 2 ** attempt, 10.0))
        raise AssertionError("unreachable")

    # ---- modes -----------------------------------------------------------------------------

    def serve(self) -> ServeSummary:
        """Register with the trajectory API and send groups until items or trainer steps end."""
        api = self.config.rollout_server_url.rstrip("/")
        registration = self._register(api)
        env_id = registration["env_id"]
        batch_size = int(self._api("GET", f"{api}/info")["batch_size"])
        summary = ServeSummary()
        evals = _EvalSchedule(self.config.eval_every_steps)
        if evals.every is not None:
            status = self._api("GET", f"{api}/status-env", {"env_id": env_id})
            self._evaluate_at(int(status["current_step"]), evals)

        def send(group: ScoredGroup | None) -> bool:
            if group is None:
                summary.dropped += 1
                return True
            self._api("POST", f"{api}/scored_data", group.payload(env_id))
            summary.sent += 1
            status = self._api("GET", f"{api}/status-env", {"env_id": env_id})
            self._evaluate_at(int(status["current_step"]), evals)
            if _trainer_done(status, registration["num_steps"], self.config.group_size,
                             batch_size):
                summary.stopped_by_trainer = True
                return False
            return True

        def paced() -> Iterator[Item]:
            """The items, each once fewer than ``max_batches_offpolicy`` batches wait."""
            limit = self.config.max_batches_offpolicy
            for item in self._train_items():
                while limit is not None:
                    status = self._api("GET", f"{api}/status-env", {"env_id": env_id})
                    self._evaluate_at(int(status["current_step"]), evals)
                    if _trainer_done(status, registration["num_steps"],
                                     self.config.group_size, batch_size):
                        summary.stopped_by_trainer = True
                        return
                    if status["queue_size"] * self.config.group_size // batch_size < limit:
                        break
                    time.sleep(PACE_WAIT_S)
                yield item

        try:
            self._run(paced(), send)
        finally:
            self._api("POST", f"{api}/disconnect-env", {"env_id": env_id})
        log.info("sent %d groups, dropped %d", summary.sent, summary.dropped)
        return summary

    def process(self, path: str | Path, num_items: int) -> int:
        """Score up to ``num_items`` items and write the kept groups as JSONL; returns how many."""
        if num_items < 1:
            raise ConfigError(f"num_items must be at least 1, got {num_items}")
        written = 0
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
            def write(group: ScoredGroup | None) -> bool:
                nonlocal written
                if group is not None:
                    f.write(json.dumps(group.record(), ensure_ascii=False) + "\n")
                    written += 1
                return True

            self._run(_take(self._train_items(), num_items), write)
        return written

    def evaluate(self) -> EvalReport:
        """Sample each eval item's group and average the rewards; no filtering, nothing sent."""
        report = EvalReport()
        totals = dict.fromkeys(self.rewards.labels, 0.0)
        total = 0.0

        squares = 0.0

        def tally(item_rewards: list[dict[str, float]]) -> bool:
            nonlocal total, squares
            report.items += 1
            for breakdown in item_rewards:
                report.completions += 1
                value = self.rewards.weighted_sum(breakdown)
                total += value
                squares += value * value
                for label, value in breakdown.items():
                    totals[label] += value
            return True

        def score_item(item: Item) -> list[dict[str, float]]:
            return [self.rewards.breakdown(c.text, item.row)
                    for c in self.sample(item, self.config.eval_group_size)]

        self._run(self.eval_items(), tally, score_item)
        if report.completions:
            report.mean_reward = total / report.completions
            report.reward_means = {k: v / report.completions for k, v in totals.items()}
            report.reward_std = math.sqrt(max(squares / report.completions
                                              - report.mean_reward ** 2, 0.0))
        return report

    def _evaluate_at(self, step: int, evals: _EvalSchedule) -> None:
        """Evaluate once the trainer reached the next scheduled step; append the row to
        ``eval_log`` (the step is the trainer's when evaluation started)."""
        if not evals.due(step):
            return
        report = self.evaluate()
        row = {"step": step, "eval/mean_reward": report.mean_reward,
               "eval/reward_std": report.reward_std, "eval/items": report.items,
               "eval/completions": report.completions,
               **{f"eval/reward/{k}": v for k, v in report.reward_means.items()}}
        log.info("step %d: eval mean reward %.4f over %d items", step, report.mean_reward,
                 report.items)
        if self.config.eval_log:
            with open(self.config.eval_log, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        evals.done(step)

    # ---- plumbing --------------------------------------------------------------------------

    def _train_items(self) -> Iterator[Item]:
        while (item := self.next_item()) is not None:
            yield item

    def _run(self, items: Iterable[Item], handle: Callable[[Any], bool],
             work: Callable[[Item], Any] | None = None) -> None:
        """Run ``work`` (default ``collect_group``) on items, ``max_num_workers`` at a time.

        ``handle`` gets each result in the main thread as it completes and returns False to
        stop; items still in flight then finish and are discarded.
        """
        work = work or self.collect_group
        source = iter(items)
        with ThreadPoolExecutor(self.config.max_num_workers) as pool:
            running: set[Future[Any]] = set()
            going = True
            while going:
                while len(running) < self.config.max_num_workers:
                    item = next(source, None)
                    if item is None:
                        break
                    running.add(pool.submit(work, item))
                if not running:
                    break
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    if going and not handle(future.result()):
                        going = False
            for future in running:
                future.cancel()

    def _register(self, api: str) -> dict[str, Any]:
        """POST /register-env, retrying every ``poll_interval`` until the trainer has started."""
        body = {"max_token_length": self.config.max_token_length,
                "desired_name": self.config.wandb_name, "weight": self.config.weight,
                "group_size": self.config.group_size}
        while True:
            answer = self._api("POST", f"{api}/register-env", body)
            if answer.get("status") == "success":
                return answer
            if answer.get("status") != WAIT_FOR_TRAINER:
                raise TrainingError(f"{api}/register-env answered {answer}",
                                    ["is rollout_server_url a trajectory API?"])
            log.info("waiting for the trainer to start (%s)", api)
            time.sleep(self.config.poll_interval)

    def _api(self, method: str, url: str, body: Any = None) -> dict[str, Any]:
        try:
            response = self._client.request(method, url, json=body)
        except httpx.HTTPError as e:
            raise TrainingError(f"cannot reach the trajectory API at {url}: {e}",
                                ["start it, or set rollout_server_url to where it listens"]
                                ) from e
        if response.status_code != 200:
            raise TrainingError(f"{method} {url} answered {response.status_code}: "
                                f"{response.text[:500]}")
        answer: dict[str, Any] = response.json()
        return answer


def _api_root(base_url: str) -> str:
    """``base_url`` without a trailing ``/v1``: both spellings are in use."""
    root = base_url.rstrip("/")
    return root[:-3] if root.endswith("/v1") else root


def _completion(choice: Mapping[str, Any], chat: bool) -> Completion:
    """A choice of /v1/completions or /v1/chat/completions, with ``token_ids`` when sent."""
    if chat:
        text = (choice.get("message") or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    logprobs = choice.get("logprobs") or {}
    if chat:
        values = [entry["logprob"] for entry in logprobs.get("content") or []]
    else:
        values = list(logprobs.get("token_logprobs") or [])
    ids = choice.get("token_ids")
    return Completion(text, list(ids) if ids is not None else None,
                      [float(v) for v in values] or None, choice.get("finish_reason"))


def _trainer_done(status: Mapping[str, Any], num_steps: int, group_size: int,
                  batch_size: int) -> bool:
    """Whether the steps done plus the batches already queued cover the trainer's num_steps.

    atroposlib's rule (``current_step + queue_size * group_size // batch_size``), with >=
    instead of > so that no group is sent that no step will use.
    """
    if num_steps <= 0 or batch_size <= 0:
        return False
    queued_batches = status["queue_size"] * group_size // batch_size
    return bool(status["current_step"] + queued_batches >= num_steps)


def _take(items: Iterator[Item], n: int) -> Iterator[Item]:
    for _, item in zip(range(n), items, strict=False):
        yield item
