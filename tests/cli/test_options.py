"""Every config field is a flag of every command that builds the config, generated from the
field, read by the same parser as key=value."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from preftune.cli.options import config_flags
from preftune.config import TrainConfig, as_overrides, parse_overrides


@pytest.mark.parametrize("command", ["train", "sweep", "pipeline"])
def test_every_train_option_is_a_flag(command):
    from preftune.cli.main import app

    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    flags = {opt for param in click_command.params for opt in param.opts}
    for name in TrainConfig.model_fields:
        if command != "train" and name == "output_dir":
            continue  # sweeps and jobs put each run in a directory of their own
        assert f"--{name.replace('_', '-')}" in flags, name


def test_flags_reach_the_config_as_key_value_would(cli, sample_pairs, tmp_path):
    result = cli("train", "--dataset", sample_pairs, "--dry-run", "--algo", "dpo,bco_pair",
                 "--loss-weights", "0.8,0.2", "--no-shared-prompt", "--beta", "0.3",
                 "--lora-target-modules", "q_proj,v_proj", "--model", "tiny")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["objective"]["algo"] == "0.8 dpo + 0.2 bco_pair"
    given = {"algo": "dpo,bco_pair", "loss_weights": "0.8,0.2", "shared_prompt": False,
             "beta": 0.3, "lora_target_modules": "q_proj,v_proj"}
    assert parse_overrides(as_overrides(given)) == parse_overrides(
        ["algo=dpo,bco_pair", "loss_weights=0.8,0.2", "shared_prompt=false", "beta=0.3",
         "lora_target_modules=q_proj,v_proj"])


def test_a_command_gets_only_the_flags_given():
    app = typer.Typer()
    seen = {}

    @app.command()
    @config_flags(TrainConfig, skip=("output_dir",))
    def run(name: str = "x", flags: dict | None = None) -> None:
        seen.update(flags or {}, name=name)

    result = CliRunner().invoke(app, ["--epochs", "2", "--pack-pairs", "--name", "y"])
    assert result.exit_code == 0, result.output
    assert seen == {"epochs": 2, "pack_pairs": True, "name": "y"}
    assert CliRunner().invoke(app, ["--output-dir", "d"]).exit_code == 2


def test_several_models_give_one_flat_set_of_flags():
    from pydantic import BaseModel

    class Limits(BaseModel):
        max_epochs: int = 20

    class Quota(BaseModel):
        models: list[str] = ["tiny"]

    app = typer.Typer()
    seen = {}

    @app.command()
    @config_flags(Limits, Quota)
    def run(flags: dict | None = None) -> None:
        seen.update(flags or {})

    result = CliRunner().invoke(app, ["--max-epochs", "3", "--models", "tiny,Qwen/*"])
    assert result.exit_code == 0, result.output
    assert seen == {"max_epochs": 3, "models": "tiny,Qwen/*"}
    with pytest.raises(TypeError, match="--max-epochs would be a flag of two models"):
        config_flags(Limits, Limits)
