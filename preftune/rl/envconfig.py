"""Dataset environment configs from YAML, in the layout Atropos users know, plus flag overrides.

A config file holds::

    tokenizer_name: tiny          # base parameters at the top level
    group_size: 4
    dataset:                      # the dataset and its rewards (wins over the top level)
      dataset_name: sample:64
      reward_functions: [{type: length, params: {target: 60}}]
    server_configs:               # the first entry supplies model_name, base_url, api_key,
      - model_name: tiny          # timeout
        base_url: http://127.0.0.1:9001
        api_key: ${OPENAI_API_KEY:-none}

Any key of ``DatasetEnvConfig`` may stand at the top level or under ``dataset:``. String values
may name environment variables as ``${VAR}`` or ``${VAR:-default}`` (read through
``preftune.settings.env_value``); a variable that is unset and has no default is a ConfigError.
A few Atropos keys preftune has no use for (``use_wandb``, ``steps_per_eval``, ...) are accepted
and ignored with a warning so that existing files load; any other unknown key is a ConfigError
naming it and the file. Flags (``overrides``) win over everything in the file.

``--config gsm8k`` names a file bundled in ``preftune/rl/configs/``; anything with a ``/`` or a
``.yaml``/``.yml`` suffix is a path.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from preftune import settings
from preftune.errors import ConfigError
from preftune.rl.envs.dataset import DatasetEnvConfig, parse_config

log = logging.getLogger(__name__)

BUNDLED = Path(__file__).parent / "configs"

# Atropos keys with no meaning here: accepted, ignored, warned about.
_IGNORED = frozenset({"use_wandb", "steps_per_eval", "total_steps", "batch_size",
                      "include_messages", "slurm", "testing", "inference_weight",
                      "num_rollouts_to_keep", "num_rollouts_per_group_for_logging"})
_SERVER_KEYS = ("model_name", "base_url", "api_key", "timeout")
_SERVER_IGNORED = frozenset({"num_requests_for_eval", "num_max_requests_at_once",
                             "server_type", "rolling_buffer_length", "health_check"})
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def bundled_configs() -> list[str]:
    """Names of the configs shipped with preftune (``--config NAME``)."""
    return sorted(p.stem for p in BUNDLED.glob("*.yaml"))


def config_path(config: str | os.PathLike[str]) -> Path:
    """The file a ``--config`` value names: a path, or a bundled config's name."""
    text = os.fspath(config)
    is_path = "/" in text or os.sep in text or text.endswith((".yaml", ".yml"))
    path = Path(text) if is_path else BUNDLED / f"{text}.yaml"
    if not path.is_file():
        raise ConfigError(f"no config file {path}" if is_path else f"no bundled config {text!r}",
                          [f"bundled configs: {', '.join(bundled_configs())}",
                           "or pass the path of a YAML file"])
    return path


def load_env_config(config: str | os.PathLike[str] | None,
                    overrides: Mapping[str, Any] | None = None) -> DatasetEnvConfig:
    """Read a config (path or bundled name, or None for flags only) and apply flag overrides.

    ``overrides`` maps field names to values; None values (flags not given) are skipped.
    """
    values: dict[str, Any] = {}
    where = "flags"
    if config is not None:
        path = config_path(config)
        where = str(path)
        values = _flatten(read_config(path), where)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    return parse_config(values, where)


def read_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top, got "
                          f"{type(data).__name__}")
    interpolated: dict[str, Any] = interpolate(data, str(path))
    return interpolated


def interpolate(value: Any, where: str, key: str = "") -> Any:
    """``value`` with ``${VAR}`` and ``${VAR:-default}`` in its strings replaced."""
    if isinstance(value, dict):
        return {k: interpolate(v, where, f"{key}.{k}" if key else str(k))
                for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        found = settings.env_value(match["name"])
        if found is not None:
            return found
        if match["default"] is not None:
            return match["default"]
        raise ConfigError(f"{where}: {key} uses ${{{match['name']}}}, but the environment "
                          f"variable {match['name']} is not set",
                          [f"export {match['name']}=..., or give a default: "
                           f"${{{match['name']}:-value}}"])

    result = _VARIABLE.sub(substitute, value)
    if "${" in _VARIABLE.sub("", value):
        raise ConfigError(f"{where}: {key} has a malformed variable in {value!r}",
                          ["write ${NAME} or ${NAME:-default}"])
    return result


# Sections for `preftune rl launch` (the trainer's options, the ports): not the environment's.
LAUNCH_SECTIONS = ("trainer", "launch")


def _flatten(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The file's layout as one flat mapping of DatasetEnvConfig fields."""
    fields = DatasetEnvConfig.model_fields
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("dataset", "server_configs", *LAUNCH_SECTIONS):
            continue
        _check_key(key, fields, where, "")
        if key not in _IGNORED:
            values[key] = value
    dataset = data.get("dataset") or {}
    if not isinstance(dataset, dict):
        raise ConfigError(f"{where}: 'dataset' must be a mapping, got {dataset!r}")
    for key, value in dataset.items():
        _check_key(key, fields, where, "dataset.")
        if key not in _IGNORED:
            values[key] = value
    values.update(_server(data.get("server_configs"), values, where))
    return values


def _check_key(key: str, fields: Mapping[str, Any], where: str, prefix: str) -> None:
    if key in _IGNORED:
        log.warning("%s: %s%s is an Atropos setting preftune does not use; ignored",
                    where, prefix, key)
    elif key not in fields:
        raise ConfigError(f"{where}: unknown key {prefix}{key!r}",
                          [f"the keys are: {', '.join(fields)}, dataset, server_configs, "
                           "trainer, launch"])


def _server(servers: Any, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """What the first ``server_configs`` entry sets; ConfigError if the file also sets it."""
    if servers is None:
        return {}
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
        raise ConfigError(f"{where}: server_configs must be a list of mappings",
                          ["e.g. server_configs: [{model_name: tiny, "
                           "base_url: 'http://127.0.0.1:9001'}]"])
    if len(servers) > 1:
        log.warning("%s: only the first of %d server_configs is used", where, len(servers))
    chosen: dict[str, Any] = {}
    for key, value in servers[0].items():
        if key in _SERVER_IGNORED:
            log.warning("%s: server_configs[0].%s is not used; ignored", where, key)
            continue
        if key not in _SERVER_KEYS:
            raise ConfigError(f"{where}: unknown key server_configs[0].{key!r}",
                              [f"a server config has the keys {', '.join(_SERVER_KEYS)}"])
        if key in values and values[key] != value:
            raise ConfigError(f"{where}: {key} is set both in server_configs "
                              f"({value!r}) and elsewhere ({values[key]!r})",
                              ["set it in one place"])
        chosen[key] = value
    return chosen
