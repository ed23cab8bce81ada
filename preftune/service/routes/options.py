"""``/v1/fine_tuning/options``: what a new-job form offers the calling tenant (models, methods,
presets, training options with their defaults and ranges, this server's limits, the tenant's
quota). A preftune extension; the browser pages' new-job form is built from it.

Everything comes from where the rest of the code reads it: methods from the algorithm table,
presets from ``config.PRESETS``, defaults and ranges from ``TrainConfig``'s fields, tightened by
the operator's ``Limits``; nothing is listed twice.
"""

from __future__ import annotations

import fnmatch
import types
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from fastapi import APIRouter
from sqlalchemy import select

from preftune.config import DEFAULT_PRESET, PRESETS, TrainConfig
from preftune.losses.table import ALGORITHMS, HYPERPARAMETERS, Hyperparameter
from preftune.models.load import MODEL_ALIASES
from preftune.service import queue
from preftune.service.db import Job
from preftune.service.deps import CurrentPrincipal, ServiceDep
from preftune.service.jobspec import LIMITED
from preftune.service.limits import Limits, Quota
from preftune.service.schemas import (
    JobOptions,
    MethodOption,
    ModelOptions,
    NumberOption,
    PresetOption,
    QuotaPublic,
    error_responses,
)

router = APIRouter(prefix="/v1/fine_tuning", tags=["fine-tuning"])

# The TrainConfig fields a new-job form sets, in the order it shows them; the loss's own
# hyperparameters come with each method.
FORM_FIELDS = ("learning_rate", "epochs", "max_steps", "batch_size", "grad_accum",
               "warmup_steps", "lr_scheduler", "weight_decay", "max_length",
               "max_prompt_length", "lora", "lora_rank", "lora_alpha", "logging_steps",
               "eval_steps", "save_steps", "seed")


@router.get("/options", response_model=JobOptions, responses=error_responses())
def job_options(principal: CurrentPrincipal, service: ServiceDep) -> JobOptions:
    """What this tenant may ask for in a job, and each option's default and range."""
    limits = service.config.limits
    quota = service.config.quota_for(principal.tenant_name)
    usage = queue.tenant_usage(service.db, principal.tenant_id)
    with service.db.session() as session:
        tuned = [m for m in session.scalars(
            select(Job.fine_tuned_model).where(Job.tenant_id == principal.tenant_id,
                                               Job.status == "succeeded")
            .order_by(Job.created_at.desc()).limit(100)) if m]
    return JobOptions(
        models=model_options(quota, tuned),
        methods=[method_option(name) for name in ALGORITHMS],
        presets=[PresetOption(name=name, description=p["description"], risks=p["risks"],
                              values=p["values"], default=name == DEFAULT_PRESET)
                 for name, p in PRESETS.items()],
        hyperparameters=[config_option(name, limits) for name in FORM_FIELDS],
        limits=limits.model_dump(),
        quota=QuotaPublic(max_running_jobs=quota.max_running_jobs,
                          max_queued_jobs=quota.max_queued_jobs, max_files=quota.max_files,
                          max_stored_mb=quota.max_stored_mb,
                          integrations=sorted(quota.integrations), usage=usage))


def model_options(quota: Quota, tuned: list[str]) -> ModelOptions:
    """The tenant's models: tiny and every alias its patterns allow (by name or by the hub
    id the alias stands for), and the patterns that name one model exactly."""
    unrestricted = "*" in quota.models
    named = ["tiny", *MODEL_ALIASES]
    allowed = [n for n in named if quota.allows_model(n)
               or quota.allows_model(MODEL_ALIASES.get(n, n))]
    exact = [p for p in quota.models if not any(c in p for c in "*?[")]
    allowed += [p for p in exact if p not in allowed
                and not any(fnmatch.fnmatchcase(p, hub) for hub in MODEL_ALIASES.values())]
    return ModelOptions(patterns=list(quota.models), unrestricted=unrestricted,
                        allowed=allowed, aliases=dict(MODEL_ALIASES), fine_tuned=tuned)


def method_option(name: str) -> MethodOption:
    algorithm = ALGORITHMS[name]
    return MethodOption(
        type=name, description=algorithm.description, paper=algorithm.paper,
        data=algorithm.data, needs_reference=algorithm.needs_reference,
        hyperparameters=[loss_option(HYPERPARAMETERS[h], algorithm.defaults)
                         for h in algorithm.hyperparameters])


def loss_option(h: Hyperparameter, defaults: dict[str, Any]) -> NumberOption:
    """A loss hyperparameter: the table's range, the config field's bounds where tighter
    (beta > 0), the method's default where it has its own."""
    field = config_option(h.name, Limits())
    lows = [v for v in (h.low, field.minimum) if v is not None]
    highs = [v for v in (h.high, field.maximum) if v is not None]
    low, high = (max(lows) if lows else None), (min(highs) if highs else None)
    return field.model_copy(update={
        "default": defaults.get(h.name, h.default), "minimum": low, "maximum": high,
        "exclusive_minimum": field.exclusive_minimum and low == field.minimum,
        "exclusive_maximum": field.exclusive_maximum and high == field.maximum,
        "choices": list(h.choices) or field.choices, "description": h.description})


def config_option(name: str, limits: Limits) -> NumberOption:
    """A TrainConfig field as a form input: type, default, pydantic bounds, and the server's
    limit as the maximum where it is lower."""
    info = TrainConfig.model_fields[name]
    kind, choices, nullable = _kind(info.annotation)
    minimum = maximum = None
    exclusive_min = exclusive_max = False
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge):
            minimum = float(rule.ge)  # type: ignore[arg-type]
        elif isinstance(rule, annotated_types.Gt):
            minimum, exclusive_min = float(rule.gt), True  # type: ignore[arg-type]
        elif isinstance(rule, annotated_types.Le):
            maximum = float(rule.le)  # type: ignore[arg-type]
        elif isinstance(rule, annotated_types.Lt):
            maximum, exclusive_max = float(rule.lt), True  # type: ignore[arg-type]
    limit = LIMITED.get(name)
    if limit is not None:
        bound = float(getattr(limits, limit))
        if maximum is None or bound < maximum:
            maximum, exclusive_max = bound, False
        else:
            limit = None
    return NumberOption(name=name, type=kind, default=info.default, minimum=minimum,
                        maximum=maximum, exclusive_minimum=exclusive_min,
                        exclusive_maximum=exclusive_max, choices=choices, nullable=nullable,
                        limit=limit, description=info.description or "")


def _kind(annotation: Any) -> tuple[Literal["integer", "number", "boolean", "string"],
                                     list[str] | None, bool]:
    """The JSON type of a field's annotation, its choices (a Literal), whether None is
    allowed."""
    args = get_args(annotation)
    nullable = False
    if get_origin(annotation) in (Union, types.UnionType):
        nullable = type(None) in args
        annotation = next(a for a in args if a is not type(None))
    if get_origin(annotation) is Literal:
        return "string", [str(a) for a in get_args(annotation)], nullable
    if annotation is bool:
        return "boolean", None, nullable
    if annotation is int:
        return "integer", None, nullable
    if annotation is float:
        return "number", None, nullable
    return "string", None, nullable
