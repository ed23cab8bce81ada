"""OpenAI's ``reinforcement`` method: a job whose policy samples answers, a grader scores them,
and GRPO trains on the scores.

``build_spec`` turns the request (``method.reinforcement.grader`` and ``hyperparameters``:
``n_epochs``, ``batch_size``, ``learning_rate_multiplier``, ``eval_interval``,
``eval_samples``, ``compute_multiplier``; GRPO options and the sampling options of
``SAMPLING`` through ``config``) into the stored config. ``check_files`` reads an RFT file
(JSONL of ``messages`` plus the fields the grader reads as ``{{item.*}}``) line by line in the
validation child. ``launch_config`` is the ``preftune rl launch`` config a worker runs: the
trajectory API, the inference server, a dataset environment over the job's file with the
grader as its reward, and the GRPO trainer.

What the hyperparameters mean here: ``batch_size`` is items (prompts) per optimizer step,
each sampled ``group_size`` times, so the trainer's batch is ``batch_size x group_size``
sequences; ``compute_multiplier`` scales ``group_size`` (4 at 1.0, at least 2);
``n_epochs`` passes over the items set the steps, ceil(items x n_epochs / batch_size) (or
``config.max_steps``); every ``eval_interval`` steps (and at the start) each item of the
validation file is sampled ``eval_samples`` times and graded: the eval reward.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from preftune.errors import ConfigError, GraderError
from preftune.graders import (
    Grader,
    PythonGrader,
    ScoreModelGrader,
    TextSimilarityGrader,
    check_item,
    validate,
    walk,
)
from preftune.graders.items import messages_problem
from preftune.rlconfig import GRPO_SCHEMA, GRPOConfig, build_config
from preftune.service.jobspec import InvalidRequest, JobSpec
from preftune.service.limits import (
    Graders,
    Limits,
    Reinforcement,
    ServiceConfig,
    plan_over_limits,
)

METHOD = "reinforcement"
# OpenAI's hyperparameters, and what "auto" stands for.
DEFAULTS: dict[str, int | float] = {"n_epochs": 1, "batch_size": 4,
                                    "learning_rate_multiplier": 1.0, "eval_interval": 5,
                                    "eval_samples": 2, "compute_multiplier": 1.0}
GROUP_SIZE = 4  # completions per item at compute_multiplier 1.0
# Sampling options ``config`` may set besides GRPO's, with their defaults.
SAMPLING: dict[str, Any] = {"group_size": None, "max_tokens": 256, "temperature": 1.0,
                            "max_steps": None}
# GRPO options the server sets: where things are, the model, the batch and step count.
SERVER_SET = ("model_name", "output_dir", "api_url", "weights_dir", "vllm_url",
              "vllm_lora_name", "training_steps", "batch_size", "seed", "report_to",
              "wandb_project", "wandb_name")
MAX_PROBLEMS = 20  # problems listed per file
EVAL_LOG = "eval.jsonl"  # in the run directory: the eval reward rows the environment writes


# ----------------------------------------------------------------------------- the request


def check_grader(data: Any, config: Graders, where: str) -> Grader:
    """The validated grader at request path ``where``; 400 ``invalid_grader`` naming the
    field of a malformed one, 400 ``grader_not_allowed`` for a python grader (nested ones
    too) where the operator turned them off."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"{where}: expected a grader object, got {type(data).__name__}",
                             where, ['e.g. {"type": "string_check", "name": "exact", '
                                     '"input": "{{sample.output_text}}", "reference": '
                                     '"{{item.answer}}", "operation": "eq"}'],
                             code="invalid_grader")
    try:
        grader = validate(data, where)
    except GraderError as e:
        raise InvalidRequest("\n".join([e.message, *e.details]), _field(e.message, where),
                             list(e.hints), code="invalid_grader") from None
    if not config.allow_python:
        found = python_at(grader, where)
        if found is not None:
            raise InvalidRequest(
                f"{found}: python graders are turned off on this server", f"{found}.type",
                ["use string_check, text_similarity, score_model or multi, or ask the "
                 "operator to allow python graders (graders.allow_python)"],
                code="grader_not_allowed")
    return grader


def check_endpoints(grader: Grader, config: Graders, where: str) -> None:
    """400 ``grader_unavailable`` for a grader (nested ones too) that needs an endpoint the
    operator has not configured: a score_model grader without ``graders.score_model_base_url``,
    a cosine text_similarity grader without ``graders.embedding_base_url``. A job is refused
    up front rather than scoring every answer 0."""
    for path, inner in walk(grader, where):
        if isinstance(inner, ScoreModelGrader) and not config.score_model_base_url:
            raise InvalidRequest(
                f"{path}: score_model graders need a model endpoint, and this server has none "
                "configured", f"{path}.type",
                ["use string_check, text_similarity or python, or ask the operator to set "
                 "graders.score_model_base_url"], code="grader_unavailable")
        if isinstance(inner, TextSimilarityGrader) and inner.evaluation_metric == "cosine" \
                and not config.embedding_base_url:
            raise InvalidRequest(
                f"{path}: evaluation_metric cosine needs an embedding model, and this server "
                "has none configured", f"{path}.evaluation_metric",
                ["use fuzzy_match, bleu, gleu, meteor or a rouge metric, or ask the operator "
                 "to set graders.embedding_base_url and graders.embedding_model"],
                code="grader_unavailable")


def _field(message: str, where: str) -> str:
    """The JSON path a validation message starts with (``grader.graders.fmt.operation``)."""
    head = message.split(": ", 1)[0]
    return head if head.startswith(where) and " " not in head else where


def python_at(grader: Grader, where: str) -> str | None:
    """The path of the first python grader in ``grader``, or None."""
    return next((path for path, inner in walk(grader, where)
                 if isinstance(inner, PythonGrader)), None)


def build_spec(model: str, method: dict[str, Any], config: dict[str, Any] | None,
               seed: int | None, server: ServiceConfig | None = None) -> JobSpec:
    """A reinforcement request as the stored config; ``InvalidRequest`` naming the bad value.
    ``server`` (the operator's config) refuses python graders where they are off, and full
    fine-tuning where jobs sample with vLLM (which loads LoRA adapters)."""
    server = server or ServiceConfig()
    settings = method.get(METHOD)
    if not isinstance(settings, dict) or "grader" not in settings:
        raise InvalidRequest("a reinforcement job needs method.reinforcement.grader",
                             f"method.{METHOD}.grader",
                             ['e.g. "method": {"type": "reinforcement", "reinforcement": '
                              '{"grader": {"type": "string_check", ...}}}'])
    grader = check_grader(settings["grader"], server.graders, f"method.{METHOD}.grader")
    check_endpoints(grader, server.graders, f"method.{METHOD}.grader")
    hyper = _hyperparameters(settings.get("hyperparameters"))
    values = dict(config or {})
    params = {name: f"config.{name}" for name in values}
    sampling = {key: values.pop(key, default) for key, default in SAMPLING.items()}
    trainer = _trainer(model, values, seed)
    group_size = sampling["group_size"] or max(2, round(GROUP_SIZE * hyper["compute_multiplier"]))
    _check_sampling(sampling, group_size)
    if server.reinforcement.rft_inference == "vllm" and not trainer.lora:
        raise InvalidRequest("this server samples reinforcement jobs with vLLM, which loads "
                             "LoRA adapters as they train: full fine-tuning is not possible",
                             "config.lora", ["leave lora at true (the default)"])
    learning_rate = trainer.learning_rate * hyper["learning_rate_multiplier"]
    if not 0 < learning_rate < 1:
        raise InvalidRequest(f"learning_rate x learning_rate_multiplier is {learning_rate:g}: "
                             "expected between 0 and 1",
                             f"method.{METHOD}.hyperparameters.learning_rate_multiplier")
    stored = {key: value for key, value in trainer.model_dump(mode="json").items()
              if key not in SERVER_SET}
    stored.update(method=METHOD, model=model, seed=trainer.seed,
                  grader=grader.model_dump(mode="json", exclude_none=True),
                  learning_rate=learning_rate, epochs=hyper["n_epochs"],
                  batch_size=hyper["batch_size"], eval_interval=hyper["eval_interval"],
                  eval_samples=hyper["eval_samples"], group_size=group_size,
                  max_tokens=sampling["max_tokens"], temperature=sampling["temperature"],
                  max_steps=sampling["max_steps"])
    hp = f"method.{METHOD}.hyperparameters"
    params.update(epochs=f"{hp}.n_epochs", batch_size=f"{hp}.batch_size")
    if seed is not None:
        params["seed"] = "seed"
    method_echo = {"type": METHOD, METHOD: {"grader": stored["grader"], "hyperparameters": hyper}}
    return JobSpec(stored, method_echo,
                   {k: hyper[k] for k in ("n_epochs", "batch_size", "learning_rate_multiplier")},
                   params)


def _hyperparameters(given: Any) -> dict[str, Any]:
    """OpenAI's hyperparameters, checked, with "auto" (or absent) as ``DEFAULTS``."""
    where = f"method.{METHOD}.hyperparameters"
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise InvalidRequest("hyperparameters must be an object", where)
    resolved = dict(DEFAULTS)
    for key, value in given.items():
        if key not in DEFAULTS:
            raise InvalidRequest(f"{key} is not a hyperparameter of the reinforcement method",
                                 f"{where}.{key}",
                                 ["the hyperparameters are " + ", ".join(DEFAULTS),
                                  "GRPO options (kl_coef, lora, ...) go in config"])
        if value is None or value == "auto":
            continue
        integral = isinstance(DEFAULTS[key], int)
        ok = (isinstance(value, int) if integral else isinstance(value, int | float)) \
            and not isinstance(value, bool) and value > 0
        if not ok:
            kind = "a positive integer" if integral else "a positive number"
            raise InvalidRequest(f"{key} must be {kind} or \"auto\", got {value!r}",
                                 f"{where}.{key}")
        resolved[key] = value
    return resolved


def _trainer(model: str, values: dict[str, Any], seed: int | None) -> GRPOConfig:
    """The GRPO options of ``config`` on GRPO's defaults; server-set ones refused."""
    for key in values:
        name = GRPO_SCHEMA.aliases.get(key, key)
        if name in SERVER_SET:
            raise InvalidRequest(f"config.{key} is set by the server for a reinforcement job",
                                 f"config.{key}", _SET_BY_SERVER.get(name, []))
    try:
        return build_config({**values, "model_name": model,
                             **({"seed": seed} if seed is not None else {})})
    except ConfigError as e:
        named = next((key for key in values if key in e.message), None)
        raise InvalidRequest(e.message, f"config.{named}" if named else "config",
                             list(e.hints)) from None


_SET_BY_SERVER = {
    "batch_size": [f"set method.{METHOD}.hyperparameters.batch_size (items per step)"],
    "training_steps": [f"set method.{METHOD}.hyperparameters.n_epochs, or config.max_steps"],
    "seed": ["set seed at the top level of the request"],
    "model_name": ["set model at the top level of the request"],
    "report_to": ["send integrations: [{\"type\": \"wandb\", ...}]"],
}


def _check_sampling(sampling: dict[str, Any], group_size: int) -> None:
    checks = (("group_size", group_size, 2, "at least 2: GRPO compares a group's answers"),
              ("max_tokens", sampling["max_tokens"], 1, "a positive integer"),
              ("max_steps", sampling["max_steps"] or 1, 1, "a positive integer"))
    for name, value, least, what in checks:
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise InvalidRequest(f"{name} must be {what}, got {value!r}", f"config.{name}")
    temperature = sampling["temperature"]
    if not isinstance(temperature, int | float) or isinstance(temperature, bool) \
            or not 0 < temperature <= 2:
        raise InvalidRequest(f"temperature must be above 0 and at most 2, got {temperature!r}",
                             "config.temperature")


def steps(config: dict[str, Any], items: int) -> int:
    """Optimizer steps: ``max_steps``, else ceil(items x epochs / batch_size)."""
    if config.get("max_steps"):
        return int(config["max_steps"])
    return max(1, math.ceil(items * int(config["epochs"]) / int(config["batch_size"])))


def plan_error(config: dict[str, Any], items: int, limits: Limits) -> dict[str, Any] | None:
    """The error of a plan over the server's limits (steps, sampled sequences), or None."""
    n = steps(config, items)
    sequences = n * int(config["batch_size"]) * int(config["group_size"])
    checks = (("max_steps", n, f"{n} optimizer steps", "lower n_epochs or set max_steps"),
              ("max_examples", sequences, f"{sequences} sampled answers ({n} steps x "
               f"batch_size={config['batch_size']} x group_size={config['group_size']})",
               "lower n_epochs, batch_size or compute_multiplier"))
    return plan_over_limits(checks, limits)


# ------------------------------------------------------------------------------- its files


def check_files(config: dict[str, Any], training: Path, validation: Path | None
                ) -> dict[str, Any]:
    """``{"error": ...}`` naming the file, line and field of each problem (up to
    ``MAX_PROBLEMS`` a file), else ``{"examples_per_epoch": items in the training file}``."""
    grader = validate(config["grader"])
    count = 0
    for param, path in (("training_file", training), ("validation_file", validation)):
        if path is None:
            continue
        items, problems = read_items(path, grader)
        if not problems and not items:
            problems = ["the file holds no items (one JSON object a line)"]
        if problems:
            shown = problems[:MAX_PROBLEMS]
            more = len(problems) - len(shown)
            lines = [f"{param}: {len(problems)} problem{'s' * (len(problems) != 1)} in an "
                     "RFT file (JSONL: one object a line, with messages and the fields the "
                     "grader reads)", *(f"{param} {p}" for p in shown)]
            if more:
                lines.append(f"... and {more} more")
            return {"error": {"code": f"invalid_{param}", "param": param,
                              "message": "\n".join(lines)}}
        if param == "training_file":
            count = len(items)
    return {"examples_per_epoch": count}


def read_items(path: Path, grader: Grader) -> tuple[list[dict[str, Any]], list[str]]:
    """The file's items, and its problems as ``line N: what (field)``."""
    items: list[dict[str, Any]] = []
    problems: list[str] = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(f"line {number}: not UTF-8 text (byte {e.start})")
                continue
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                problems.append(f"line {number}: not valid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(row, dict):
                problems.append(f"line {number}: expected a JSON object, found "
                                f"{type(row).__name__}")
                continue
            problem = messages_problem(row, "messages")
            if problem is not None:
                problems.append(f"line {number}: {problem}")
            missing = check_item(grader, row)
            if missing:
                problems.append(f"line {number}: grader '{grader.name}' reads "
                                f"{', '.join(missing)}, which this item lacks (its fields: "
                                f"{', '.join(row) or 'none'})")
            if problem is None and not missing:
                items.append(row)
    return items, problems


# ------------------------------------------------------------------------------- the run


def count_items(path: Path) -> int:
    """Items in a checked RFT file: its non-blank lines."""
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def launch_config(config: dict[str, Any], training: Path, validation: Path | None,
                  run_dir: Path, server: ServiceConfig) -> dict[str, Any]:
    """The ``preftune rl launch`` config of the job: environment, ``trainer`` and
    ``launch`` sections (ports chosen when it starts). Evaluation, with a validation file,
    writes ``<run>/eval.jsonl``."""
    n = steps(config, count_items(training))
    model = str(config["model"])
    trainer = {key: value for key, value in config.items()  # None: the trainer's default
               if key in GRPOConfig.model_fields and key not in SERVER_SET and value is not None}
    trainer.update(model_name=model, seed=int(config["seed"]), training_steps=n,
                   batch_size=int(config["batch_size"]) * int(config["group_size"]))
    trainer["seq_len"] = int(trainer.get("seq_len", 512))
    graders = server.graders
    reward = {"grader": config["grader"], "allow_python": graders.allow_python,
              "python_timeout_s": graders.python_timeout_s,
              "python_memory_mb": graders.python_memory_mb}
    if graders.score_model_base_url:
        reward["score_model_base_url"] = graders.score_model_base_url
    if graders.embedding_base_url:
        reward.update(embedding_base_url=graders.embedding_base_url,
                      embedding_model=graders.embedding_model)
    dataset: dict[str, Any] = {
        "dataset_name": str(training), "messages_field": "messages",
        "reward_functions": [{"type": "grader", "params": reward}],
        "seed": int(config["seed"]),
        # Enough passes that dropped groups (answers over seq_len) do not starve the trainer;
        # the environment stops once the trainer has the batches of its last step.
        "epochs": int(config["epochs"]) + 1,
        "max_tokens": int(config["max_tokens"]), "temperature": float(config["temperature"]),
    }
    if validation is not None:
        dataset.update(eval_dataset_name=str(validation), eval_split="train",
                       eval_every_steps=int(config["eval_interval"]),
                       eval_group_size=int(config["eval_samples"]),
                       eval_log=str(run_dir / EVAL_LOG))
    return {
        "tokenizer_name": model, "model_name": model, "use_chat": True,
        "group_size": int(config["group_size"]), "max_num_workers": 2,
        "max_batches_offpolicy": 1,  # sample from weights at most a step old
        "max_token_length": trainer["seq_len"], "ensure_scores_are_not_same": False,
        "dataset": dataset,
        "trainer": trainer,
        "launch": _launch(server.reinforcement),
    }


def _launch(where: Reinforcement) -> dict[str, Any]:
    """rl launch's ``launch:`` section: any free ports, the operator's inference server."""
    launch: dict[str, Any] = {"api_port": 0, "inference_port": 0}
    if where.rft_inference == "vllm":
        launch.update(inference="vllm", vllm_command=where.rft_vllm_command,
                      vllm_args=list(where.rft_vllm_args))
    return launch
