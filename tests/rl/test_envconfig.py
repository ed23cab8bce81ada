"""YAML environment configs: the Atropos layout, ${VAR} interpolation, named lookup, errors."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from preftune.errors import ConfigError
from preftune.rl.envconfig import bundled_configs, config_path, load_env_config

LAYOUT = """\
tokenizer_name: tiny
group_size: 2
max_tokens: 8
use_wandb: false
dataset:
  dataset_name: sample:16
  prompt_field: prompt
  max_tokens: 32
  reward_functions:
    - type: length
      weight: 1.0
      params: {target: 40}
server_configs:
  - model_name: my-model
    base_url: ${ENVCFG_URL:-http://127.0.0.1:9001}
    api_key: ${ENVCFG_KEY}
    timeout: 30
    num_max_requests_at_once: 4
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "env.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_layout_flattens_with_dataset_and_server_sections_winning(tmp_path, monkeypatch,
                                                                       caplog):
    monkeypatch.setenv("ENVCFG_KEY", "sk-test")
    monkeypatch.delenv("ENVCFG_URL", raising=False)
    with caplog.at_level(logging.WARNING):
        cfg = load_env_config(write(tmp_path, LAYOUT))
    assert (cfg.tokenizer_name, cfg.group_size, cfg.dataset_name) == ("tiny", 2, "sample:16")
    assert cfg.max_tokens == 32  # dataset: overrides the top level
    assert (cfg.model_name, cfg.base_url, cfg.api_key, cfg.timeout) == (
        "my-model", "http://127.0.0.1:9001", "sk-test", 30)
    assert cfg.reward_functions == [{"type": "length", "weight": 1.0, "params": {"target": 40}}]
    assert "use_wandb" in caplog.text and "num_max_requests_at_once" in caplog.text


def test_interpolation_uses_the_variable_then_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVCFG_KEY", "k")
    monkeypatch.setenv("ENVCFG_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("ENVCFG_GROUP", "8")
    path = write(tmp_path, LAYOUT.replace("group_size: 2", "group_size: ${ENVCFG_GROUP}"))
    cfg = load_env_config(path)
    assert (cfg.base_url, cfg.group_size) == ("http://gpu-box:8000/v1", 8)


def test_a_missing_variable_without_default_names_it_and_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("ENVCFG_KEY", raising=False)
    path = write(tmp_path, LAYOUT)
    with pytest.raises(ConfigError) as e:
        load_env_config(path)
    assert "ENVCFG_KEY" in e.value.message and str(path) in e.value.message
    assert "server_configs[0].api_key" in e.value.message
    with pytest.raises(ConfigError, match="malformed"):
        load_env_config(write(tmp_path, LAYOUT.replace("${ENVCFG_KEY}", "${ENVCFG KEY}")))


def test_flags_override_the_file_and_unset_flags_do_not(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVCFG_KEY", "k")
    cfg = load_env_config(write(tmp_path, LAYOUT),
                          {"group_size": 16, "temperature": None, "split": "train[:4]"})
    assert (cfg.group_size, cfg.temperature, cfg.split) == (16, 1.0, "train[:4]")
    flags_only = load_env_config(None, {"dataset_name": "x.jsonl", "reward_functions": ["length"]})
    assert flags_only.dataset_name == "x.jsonl"


@pytest.mark.parametrize(("old", "new", "named"), [
    ("group_size: 2", "group_sise: 2", "'group_sise'"),
    ("  prompt_field: prompt", "  prompt_feild: prompt", "dataset.'prompt_feild'"),
    ("    timeout: 30", "    timeout_s: 30", "server_configs[0].'timeout_s'"),
])
def test_unknown_keys_are_errors_naming_key_and_file(tmp_path, monkeypatch, old, new, named):
    monkeypatch.setenv("ENVCFG_KEY", "k")
    path = write(tmp_path, LAYOUT.replace(old, new))
    with pytest.raises(ConfigError) as e:
        load_env_config(path)
    assert named in e.value.message and str(path) in e.value.message


def test_bad_values_and_conflicts_name_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVCFG_KEY", "k")
    with pytest.raises(ConfigError, match=r"group_size: .*greater than 0.*got 0"):
        load_env_config(write(tmp_path, LAYOUT.replace("group_size: 2", "group_size: 0")))
    with pytest.raises(ConfigError, match="dataset_name: required"):
        load_env_config(write(tmp_path, LAYOUT.replace("  dataset_name: sample:16\n", "")))
    with pytest.raises(ConfigError, match="base_url is set both in server_configs"):
        load_env_config(write(tmp_path, "base_url: http://a:1\n" + LAYOUT))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_env_config(write(tmp_path, "group_size: [1\n"))


def test_named_configs_come_from_the_bundled_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("PREFTUNE_INFERENCE_URL", raising=False)
    assert {"tiny", "gsm8k"} <= set(bundled_configs())
    tiny = load_env_config("tiny")
    assert (tiny.dataset_name, tiny.tokenizer_name, tiny.group_size, tiny.max_tokens) == (
        "sample:400", "tiny", 4, 24)
    assert (tiny.base_url, tiny.rollout_server_url) == ("http://127.0.0.1:9001",
                                                        "http://127.0.0.1:8000")
    assert tiny.reward_functions[0]["type"] == "length"
    gsm8k = load_env_config("gsm8k")
    assert (gsm8k.dataset_name, gsm8k.dataset_config) == ("openai/gsm8k", "main")
    assert (gsm8k.prompt_field, gsm8k.answer_field, gsm8k.api_key) == (
        "question", "answer", "none")
    assert [r["type"] for r in gsm8k.reward_functions] == ["accuracy", "format"]
    own = write(tmp_path, "dataset_name: sample:4\nreward_functions: [length]\n")
    assert config_path(str(own)) == own
    with pytest.raises(ConfigError, match="no bundled config 'gsm9k'") as e:
        load_env_config("gsm9k")
    assert "gsm8k" in e.value.hints[0]
    with pytest.raises(ConfigError, match="no config file"):
        load_env_config(str(tmp_path / "absent.yaml"))
