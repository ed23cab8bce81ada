"""From a job request (OpenAI's ``method`` and ``hyperparameters``, preftune's ``config``) to
the ``TrainConfig`` values a worker runs, and the file checks done in ``validating_files``.

``method.type`` picks the objective: any algorithm of the table (``preftune.losses.table``:
dpo, ipo, ..., kto, sft; TRL's names such as ``sigmoid`` too; ``supervised`` is sft), or
``mixture``, whose hyperparameters name the parts in ``loss_type`` (a list) and may weight them
with ``loss_weights``. ``hyperparameters`` takes ``beta``, ``batch_size``, ``n_epochs`` and
``learning_rate_multiplier`` (times the learning rate the algorithm and preset would use
anyway), ``"auto"`` meaning that default, and any other ``TrainConfig`` field by name.
``config`` takes any ``TrainConfig`` field too; ``hyperparameters`` win where both name one.
Paths are the server's business: ``dataset``, ``eval_dataset`` and ``output_dir`` come from
the job's files and directory, never from the request.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from preftune import settings
from preftune.config import ALIASES, TrainConfig
from preftune.engine.data import read_data
from preftune.errors import ConfigError, DataError, PreftuneError, UsageError
from preftune.losses.table import ALGORITHMS, hyperparameters
from preftune.models.load import MODEL_ALIASES
from preftune.runs.trackers import TRACKERS
from preftune.service.limits import Limits, Quota, ServiceConfig

# method.type -> algo: every table name and alias, OpenAI's "supervised"; "mixture" takes its
# parts from hyperparameters.loss_type.
METHODS: dict[str, str | None] = {
    **{name: name for name in ALGORITHMS},
    **{alias: a.name for a in ALGORITHMS.values() for alias in a.aliases},
    "supervised": "sft", "mixture": None,
    "reinforcement": None,  # sampled, graded, trained with GRPO: service/rft.py
}
SERVER_OWNED = ("dataset", "eval_dataset", "output_dir")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w-]*(\.[\w-]+)*/[A-Za-z0-9][\w-]*(\.[\w-]+)*")


class InvalidRequest(UsageError):
    """A request value that cannot become a training config, or that this server does not
    allow; ``param`` names it and ``code`` says which (the API answers 400 with both)."""

    def __init__(self, message: str, param: str | None, hints: list[str] | None = None,
                 code: str = "invalid_value") -> None:
        super().__init__(message, hints or [])
        self.param = param
        self.code = code


@dataclass(frozen=True)
class JobSpec:
    """What the queue stores: the config values (no paths) and the method as echoed back.

    ``params`` maps each config field the request set to the request field that set it
    (``epochs`` -> ``method.dpo.hyperparameters.n_epochs``), for errors found after the build.
    """

    config: dict[str, Any]
    method: dict[str, Any]
    hyperparameters: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)

    def param(self, name: str) -> str:
        """The request field behind config field ``name`` (``config.<name>`` if defaulted)."""
        return self.params.get(name, f"config.{name}")


def check_model_name(model: str) -> None:
    """Only names, never paths: ``tiny``, an alias, or a hub id ``org/name``."""
    if model == "tiny" or model in MODEL_ALIASES or _HUB_ID.fullmatch(model):
        return
    raise InvalidRequest(f"model {model!r} is not a model name the service accepts", "model", [
        "use tiny, an alias (" + ", ".join(list(MODEL_ALIASES)[:4]) + ", ...) or a hub id "
        "org/name; a fine-tuned model is named ft:...",
    ])


def build_spec(model: str, method: dict[str, Any] | None, config: dict[str, Any] | None,
               seed: int | None, server: ServiceConfig | None = None) -> JobSpec:
    """Validate a request into a ``JobSpec``; raise ``InvalidRequest`` naming the bad value.
    ``server`` (the operator's config) applies to a reinforcement job: its grader settings
    and where the job samples."""
    method = dict(method or {"type": "dpo"})
    kind = method.get("type", "dpo")
    if kind not in METHODS:
        raise InvalidRequest(f"method type {kind!r} is not supported", "method.type",
                             ["choose one of: " + ", ".join(METHODS)])
    if kind == "reinforcement":
        from preftune.service import rft

        return rft.build_spec(model, method, config, seed, server)
    chosen = method.get(kind) or {}
    hyper = chosen.get("hyperparameters") if isinstance(chosen, dict) else None
    if hyper is not None and not isinstance(hyper, dict):
        raise InvalidRequest("hyperparameters must be an object", f"method.{kind}.hyperparameters")
    hyper = {k: v for k, v in (hyper or {}).items() if v != "auto" and v is not None}
    values: dict[str, Any] = {}
    for key, value in (config or {}).items():
        if ALIASES.get(key, key) in SERVER_OWNED:
            raise InvalidRequest(f"config.{key} is set by the server", f"config.{key}",
                                 ["name data with training_file and validation_file"])
        if ALIASES.get(key, key) == "model":
            raise InvalidRequest("config.model is not accepted: use the model field",
                                 f"config.{key}")
        values[key] = value
    multiplier = hyper.pop("learning_rate_multiplier", None)
    renamed = {"n_epochs": "epochs"}
    for key, value in hyper.items():
        if ALIASES.get(key, key) in SERVER_OWNED or ALIASES.get(key, key) == "model":
            raise InvalidRequest(f"{key} is not a hyperparameter", f"method.{kind}."
                                 f"hyperparameters.{key}")
        values[renamed.get(key, key)] = value
    if METHODS[kind] is None and "algo" not in {ALIASES.get(k, k) for k in hyper}:
        raise InvalidRequest("a mixture names its parts in hyperparameters.loss_type",
                             f"method.{kind}.hyperparameters.loss_type",
                             ['for example {"loss_type": ["dpo", "bco_pair", "sft"], '
                              '"loss_weights": [0.8, 0.2, 1.0]}'])
    if METHODS[kind] is not None:
        values["algo"] = METHODS[kind]
    values.update(model=model, dataset="training_file")
    if seed is not None:
        values["seed"] = seed
    params = {ALIASES.get(k, k): f"config.{k}" for k in config or {}}
    params.update({ALIASES.get(renamed.get(k, k), renamed.get(k, k)):
                   f"method.{kind}.hyperparameters.{k}" for k in hyper})
    if seed is not None:
        params.update(seed="seed")
    cfg = _build(values, "config", params)
    if multiplier is not None:
        if not isinstance(multiplier, int | float) or isinstance(multiplier, bool) \
                or multiplier <= 0:
            raise InvalidRequest(f"learning_rate_multiplier must be a positive number, got "
                                 f"{multiplier!r}",
                                 f"method.{kind}.hyperparameters.learning_rate_multiplier")
        cfg = _build({**cfg.model_dump(), "learning_rate": cfg.learning_rate * multiplier},
                     f"method.{kind}.hyperparameters.learning_rate_multiplier")
    base = _build({k: v for k, v in values.items() if ALIASES.get(k, k) != "learning_rate"},
                  "config")
    resolved: dict[str, Any] = {"batch_size": cfg.batch_size,
                "learning_rate_multiplier": cfg.learning_rate / base.learning_rate,
                "n_epochs": cfg.epochs}
    if "beta" in hyperparameters(cfg.algorithms):
        resolved["beta"] = cfg.beta
    if METHODS[kind] is None:
        resolved.update(loss_type=list(cfg.algorithms),
                        loss_weights=cfg.loss_weights or [1.0] * len(cfg.algorithms))
    if multiplier is not None:
        params["learning_rate"] = f"method.{kind}.hyperparameters.learning_rate_multiplier"
    stored = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in SERVER_OWNED}
    return JobSpec(stored, {"type": kind, kind: {"hyperparameters": resolved}},
                   {k: v for k, v in resolved.items() if k != "beta"}, params)


def _build(values: dict[str, Any], param: str,
           params: dict[str, str] | None = None) -> TrainConfig:
    """TrainConfig.build, its error naming the request field (``params``: field -> name)."""
    try:
        return TrainConfig.build(values)
    except ConfigError as e:
        found = re.search(r"(?:option '|\b)([a-z_0-9]+)(?:'|=)", e.message)
        # Else the first option the message names ("max_prompt_length (...) must be less").
        name = found.group(1) if found else next(
            (word for word in re.findall(r"[a-z][a-z_0-9]*", e.message)
             if word in TrainConfig.model_fields), None)
        named = (params or {}).get(name or "") or (f"config.{name}" if name else param)
        raise InvalidRequest(e.message, named, e.hints) from e


# ---------------------------------------------------------------- what this server allows

# Config field -> the Limits field that bounds it.
LIMITED = {"epochs": "max_epochs", "max_steps": "max_steps", "batch_size": "max_batch_size",
           "grad_accum": "max_grad_accum", "max_length": "max_length",
           "lora_rank": "max_lora_rank", "seq_len": "max_length"}  # seq_len: reinforcement
INT64_MAX = 2**63 - 1
# A tracker logs with whatever credentials the training process finds: a tenant reaches its
# own account through ``integrations``, with the credentials the operator set for it.
TRACKER_OPTIONS = ("report_to", "wandb_project", "wandb_name")


def over_limit(shown: str, value: int, limit: str, bound: int, param: str) -> InvalidRequest:
    """The 400 for a value over one of the server's ``limits``."""
    return InvalidRequest(f"{shown} {value} is over this server's limit {limit}={bound}", param,
                          [f"ask for at most {bound}, or ask the operator to raise "
                           f"limits.{limit}"], code="limit_exceeded")


def check_limits(spec: JobSpec, limits: Limits) -> None:
    """Refuse a job that asks for more than ``limits`` allow, and any integer option out of
    the 64-bit range (no column or tensor index holds it), with a 400 naming the field."""
    for name, limit in LIMITED.items():
        value, bound = spec.config.get(name), getattr(limits, limit)
        if isinstance(value, int) and value > bound:
            param = spec.param(name)
            raise over_limit(_leaf(param), value, limit, bound, param)
    for name, value in spec.config.items():
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX:
            param = spec.param(name)
            raise InvalidRequest(f"{_leaf(param)} {value} is out of range: expected at most "
                                 f"{INT64_MAX}", param)


def refuse_tracker_options(spec: JobSpec) -> None:
    """Trackers come from ``integrations``: in config they would log with the server's own
    credentials, into a project the tenant names."""
    for name in TRACKER_OPTIONS:
        if name in spec.params and spec.config.get(name):
            param = spec.param(name)
            raise InvalidRequest(
                f"{_leaf(param)} is not accepted by the service: a job's metrics reach a "
                "tracker through integrations, with your organization's credentials", param,
                ['send integrations: [{"type": "wandb", "wandb": {"project": "my-project"}}]'])


def with_integrations(spec: JobSpec, integrations: list[dict[str, Any]],
                      quota: Quota) -> JobSpec:
    """The job's config with the trackers of ``integrations`` (OpenAI's shape,
    ``[{"type": "wandb", "wandb": {"project", "name", "entity", "tags"}}]``) turned on.

    A type the tenant's ``quota`` does not list is refused: the operator gives each tenant
    the credentials it uses. ``entity`` and ``tags`` have no TrainConfig field; the worker
    gives them to the training process as WANDB_ENTITY and WANDB_TAGS.
    """
    config = dict(spec.config)
    seen: set[str] = set()
    for i, item in enumerate(integrations):
        kind = item["type"]
        if kind not in quota.integrations:
            enabled = ", ".join(quota.integrations) or "none"
            raise InvalidRequest(
                f"integration {kind!r} is not enabled for your organization on this server "
                f"(enabled: {enabled})", f"integrations.{i}.type",
                [f"leave it out, or ask the operator to enable it: quota.integrations.{kind} "
                 f"(or tenants.<name>.integrations.{kind}) in the service config, with the "
                 "credentials it uses"], code="integration_not_allowed")
        if kind in seen:
            raise InvalidRequest(f"integration {kind!r} is given twice", f"integrations.{i}",
                                 ["give each type once"])
        if not tracker_installed(kind):
            raise InvalidRequest(
                f"integration {kind!r} is enabled, but its package ({TRACKERS[kind].module}) "
                "is not installed on this server", f"integrations.{i}.type",
                [f"leave it out for now; the operator installs it: pip install "
                 f"'preftune[{kind}]'"], code="integration_unavailable")
        seen.add(kind)
        options = item[kind]
        config.update(report_to=[*config.get("report_to", []), kind],
                      wandb_project=options["project"], wandb_name=options.get("name"))
    return replace(spec, config=config)


def tracker_installed(kind: str) -> bool:
    """Whether the tracker's package is installed (found, not imported: wandb is slow to
    import); a job would otherwise fail as it starts."""
    return importlib.util.find_spec(TRACKERS[kind].module) is not None


def check_model_allowed(model: str, quota: Quota) -> None:
    """The tenant may fine-tune ``model`` (by its name, or an alias by the hub id it stands
    for: ``Qwen/*`` allows ``qwen2.5-0.5b``)."""
    if any(quota.allows_model(name) for name in (model, MODEL_ALIASES.get(model, model))):
        return
    raise InvalidRequest(f"model {model!r} is not allowed for your organization on this "
                         "server", "model",
                         ["allowed: " + (", ".join(quota.models) or "none"),
                          "the operator sets them in the service config: quota.models (or "
                          "tenants.<name>.models)"], code="model_not_allowed")


# LoRA's own module types (peft adapts Linear, Embedding, Conv and GPT-2's Conv1D layers).
def _adaptable_types() -> tuple[type, ...]:
    import torch
    from transformers.pytorch_utils import Conv1D

    return (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, Conv1D)


# The projection names of common architectures (Llama, Qwen, Mistral, Gemma, Phi, GPT-2,
# GPT-NeoX / Pythia, Falcon, OPT, MPT, GPT-J, T5, Mamba): what a model whose config the server
# does not have is checked against.
KNOWN_MODULES = frozenset({
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv_proj",
    "gate_up_proj", "out_proj", "c_attn", "c_proj", "c_fc", "query_key_value", "dense",
    "dense_h_to_4h", "dense_4h_to_h", "fc1", "fc2", "fc_in", "fc_out", "Wqkv", "query", "key",
    "value", "w1", "w2", "w3", "wi", "wo", "q", "k", "v", "o", "in_proj", "x_proj", "dt_proj",
    "lm_head", "embed_tokens", "wte",
})


def check_target_modules(spec: JobSpec, model: str, source: str) -> None:
    """Refuse ``lora_target_modules`` naming no module of the base model, before any GPU
    time is spent (peft would fail on the worker: "Target modules ... not found").

    ``source`` is what the model resolves to on the server (``tiny``, an alias, a hub id, or
    a directory for an ``ft:`` model). Its module names come from a skeleton of the model
    built on the meta device from its config, which the server must have locally (no
    download); without one, names are checked against the projections of common
    architectures (``KNOWN_MODULES``).
    """
    targets = spec.config.get("lora_target_modules")
    if not spec.config.get("lora", True) or not isinstance(targets, list):
        return
    names = adaptable_modules(source)
    known = names if names is not None else KNOWN_MODULES
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in known)]
    if not missing:
        return
    leaves = sorted({n.rsplit(".", 1)[-1] for n in known})
    hints = [f"{model} has: " + ", ".join(leaves[:20]) + (", ..." if len(leaves) > 20 else ""),
             'or leave lora_target_modules at "all-linear"']
    if names is None:
        hints = ["the server has no config of " + model + " to read its module names from, "
                 "so only the projection names of common architectures are accepted: "
                 + ", ".join(sorted(KNOWN_MODULES)), 'use "all-linear", or ask the operator '
                 "to put the model's config.json in the server's Hugging Face cache"]
    param = spec.param("lora_target_modules")
    raise InvalidRequest(f"lora_target_modules {missing} name no module that LoRA can adapt "
                         f"in {model}", param, hints)


@functools.lru_cache(maxsize=64)
def adaptable_modules(source: str) -> frozenset[str] | None:
    """The dotted names of the modules of ``source`` that LoRA can adapt, or None when the
    server has no config of it locally. No weights are read or allocated."""
    config = _local_config(source, depth=0)
    if config is None:
        return None
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
    except Exception:  # an architecture transformers cannot build without remote code
        return None
    kinds = _adaptable_types()
    return frozenset(name for name, module in skeleton.named_modules()
                     if name and isinstance(module, kinds))


def _local_config(source: str, depth: int) -> Any:
    """The transformers config of a model name or directory, from local files only."""
    from transformers import AutoConfig

    where = MODEL_ALIASES.get(source, source)
    if source == "tiny":
        from preftune.models.tiny import VERSION

        where = str(settings.cache_dir() / f"tiny-v{VERSION}")  # if built; never built here
        if not (Path(where) / "config.json").is_file():
            return None
    elif Path(source).is_absolute():
        adapter = Path(source) / "adapter_config.json"
        if not (Path(source) / "config.json").is_file() and adapter.is_file() and depth < 4:
            try:
                base = json.loads(adapter.read_text(encoding="utf-8"))["base_model_name_or_path"]
            except (OSError, ValueError, KeyError, TypeError):
                return None
            return _local_config(str(base), depth + 1)
    try:
        return AutoConfig.from_pretrained(where, local_files_only=True)
    except Exception:  # not in the cache, or not a config transformers knows
        return None


def request_hash(body: dict[str, Any]) -> str:
    """SHA-256 of a request body as canonical JSON: the same request hashes the same."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _leaf(param: str) -> str:
    return param.rsplit(".", 1)[-1]


def train_values(config: dict[str, Any], training: Path, validation: Path | None,
                 run_dir: Path) -> dict[str, Any]:
    """The job's stored config with the server's paths filled in."""
    values = {**config, "dataset": str(training), "output_dir": str(run_dir)}
    if validation is not None:
        values["eval_dataset"] = str(validation)
    return values


def validate_files(config: dict[str, Any], training: Path, validation: Path | None
                   ) -> dict[str, Any] | None:
    """Read the job's files with the data layer as training will; the OpenAI-shaped error
    (code, message with the record-level problems, param) or None when they are good."""
    cfg = TrainConfig.build(config)
    for param, path in (("training_file", training), ("validation_file", validation)):
        if path is None:
            continue
        try:
            read_data(cfg, str(path))  # pairs, or unpaired examples for kto
        except PreftuneError as e:
            code = "invalid_" + param if isinstance(e, DataError | UsageError) else "file_error"
            lines = [e.message, *e.details, *(f"hint: {h}" for h in e.hints)]
            return {"code": code, "message": "\n".join(lines), "param": param}
    return None
