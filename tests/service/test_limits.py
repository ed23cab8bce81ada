"""The operator's service config: a YAML file with ``${VAR}`` from the environment, flags over
it, per-tenant quota overrides, and errors that name the setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from preftune.errors import ConfigError
from preftune.service.limits import Limits, Quota, Retention, ServiceConfig, load

DOCS = Path(__file__).parents[2] / "docs" / "service.md"


def test_a_file_with_environment_values_and_tenant_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("TEAM_KEY", "wandb-secret")
    path = tmp_path / "service.yaml"
    path.write_text("limits: {max_epochs: 5}\n"
                    "quota: {max_running_jobs: 1, models: [tiny, 'Qwen/*']}\n"
                    "tenants:\n  research:\n    max_running_jobs: 4\n"
                    "    integrations: {wandb: {env: {WANDB_API_KEY: '${TEAM_KEY}'}}}\n")
    config = load(path, {"max_epochs": 7, "metrics_token": "m", "max_queued_jobs": None})
    assert config.limits.max_epochs == 7  # the flag wins over the file
    assert config.metrics_token == "m" and config.quota.max_queued_jobs == 100
    research = config.quota_for("research")
    assert research.max_running_jobs == 4 and research.models == ["tiny", "Qwen/*"]
    assert research.integrations["wandb"].env == {"WANDB_API_KEY": "wandb-secret"}
    assert config.quota_for("someone-else").integrations == {}
    assert config.max_running() == {"": 1, "research": 4}
    assert research.allows_model("Qwen/Qwen2.5-0.5B") and not research.allows_model("x/y")


@pytest.mark.parametrize(("text", "words"), [
    ("limits: {max_epochs: 0}", "limits.max_epochs"),
    ("limits: {max_epochs: many}", "limits.max_epochs"),
    ("quota: {max_files: 10, max_fils: 3}", "quota.max_fils"),
    ("tenants: {research: {max_running_jobs: -1}}", "tenants.research: max_running_jobs"),
    ("metrics_token: '${PREFTUNE_NOT_SET_ANYWHERE}'", "PREFTUNE_NOT_SET_ANYWHERE"),
    ("- a list", "must be a mapping"),
    ("graders: {embedding_base_url: 'http://127.0.0.1:9/v1'}",
     "graders: embedding_base_url is set without embedding_model"),
    ("limits: {max_epochs: [", "not valid YAML"),
])
def test_a_bad_file_is_an_error_naming_the_setting(tmp_path, text, words):
    path = tmp_path / "service.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as error:
        load(path)
    assert words in error.value.message


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the service config .*nope.yaml"):
        load(tmp_path / "nope.yaml")


def test_the_defaults_bound_every_cost():
    config = ServiceConfig()
    assert config.quota.models == ["tiny"]  # no hub model unless the operator allows it
    assert config.metrics_token is None and config.pass_env == []
    assert config.retention.jobs_days is None and config.retention.files_days is None


@pytest.mark.parametrize("section", [Limits, Quota, Retention, ServiceConfig])
def test_the_operators_guide_documents_every_setting(section):
    text = DOCS.read_text(encoding="utf-8")
    guide = text[text.index("## Operating preftune serve"):text.index("## Pipeline mode")]
    for name in section.model_fields:
        if section is ServiceConfig and name in ("limits", "quota", "retention"):
            continue
        assert re.search(rf"`([a-z_<>]+\.)*{name}`", guide), f"{name} is not in docs/service.md"
