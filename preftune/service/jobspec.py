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

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preftune.config import ALIASES, TrainConfig
from preftune.engine.data import read_data
from preftune.errors import ConfigError, DataError, PreftuneError, UsageError
from preftune.losses.table import ALGORITHMS, hyperparameters
from preftune.models.load import MODEL_ALIASES

# method.type -> algo: every table name and alias, OpenAI's "supervised"; "mixture" takes its
# parts from hyperparameters.loss_type.
METHODS: dict[str, str | None] = {
    **{name: name for name in ALGORITHMS},
    **{alias: a.name for a in ALGORITHMS.values() for alias in a.aliases},
    "supervised": "sft", "mixture": None,
}
SERVER_OWNED = ("dataset", "eval_dataset", "output_dir")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w-]*(\.[\w-]+)*/[A-Za-z0-9][\w-]*(\.[\w-]+)*")


class InvalidRequest(UsageError):
    """A request value that cannot become a training config; ``param`` names it."""

    def __init__(self, message: str, param: str | None, hints: list[str] | None = None) -> None:
        super().__init__(message, hints or [])
        self.param = param


@dataclass(frozen=True)
class JobSpec:
    """What the queue stores: the config values (no paths) and the method as echoed back."""

    config: dict[str, Any]
    method: dict[str, Any]
    hyperparameters: dict[str, Any]


def check_model_name(model: str) -> None:
    """Only names, never paths: ``tiny``, an alias, or a hub id ``org/name``."""
    if model == "tiny" or model in MODEL_ALIASES or _HUB_ID.fullmatch(model):
        return
    raise InvalidRequest(f"model {model!r} is not a model name the service accepts", "model", [
        "use tiny, an alias (" + ", ".join(list(MODEL_ALIASES)[:4]) + ", ...) or a hub id "
        "org/name; a fine-tuned model is named ft:...",
    ])


def build_spec(model: str, method: dict[str, Any] | None, config: dict[str, Any] | None,
               seed: int | None) -> JobSpec:
    """Validate a request into a ``JobSpec``; raise ``InvalidRequest`` naming the bad value."""
    method = dict(method or {"type": "dpo"})
    kind = method.get("type", "dpo")
    if kind not in METHODS:
        raise InvalidRequest(f"method type {kind!r} is not supported", "method.type",
                             ["choose one of: " + ", ".join(METHODS)])
    settings = method.get(kind) or {}
    hyper = settings.get("hyperparameters") if isinstance(settings, dict) else None
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
    params = {ALIASES.get(renamed.get(k, k), renamed.get(k, k)):
              f"method.{kind}.hyperparameters.{k}" for k in hyper}
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
    stored = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in SERVER_OWNED}
    return JobSpec(stored, {"type": kind, kind: {"hyperparameters": resolved}},
                   {k: v for k, v in resolved.items() if k != "beta"})


def _build(values: dict[str, Any], param: str,
           params: dict[str, str] | None = None) -> TrainConfig:
    """TrainConfig.build, its error naming the request field (``params``: field -> name)."""
    try:
        return TrainConfig.build(values)
    except ConfigError as e:
        found = re.search(r"(?:option '|\b)([a-z_0-9]+)(?:'|=)", e.message)
        field = found.group(1) if found else None
        named = (params or {}).get(field or "") or (f"config.{field}" if field else param)
        raise InvalidRequest(e.message, named, e.hints) from e


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
