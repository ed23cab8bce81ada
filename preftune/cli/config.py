"""``preftune presets`` and ``preftune config``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from preftune.cli.common import out
from preftune.config import ALGO_DEFAULTS, DEFAULT_PRESET, PRESETS, TrainConfig, parse_overrides
from preftune.config import read_yaml as read_config


def register(app: typer.Typer) -> None:
    app.command("presets")(presets_cmd)
    app.command("config")(config_cmd)


def presets_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the hyperparameter presets of the DPO tuning guide, with their risks."""
    if as_json:
        print(json.dumps(PRESETS, indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for name in ("preset", "beta", "learning rate", "epochs", "grad accum", "warmup steps"):
        table.add_column(name, justify="left" if name == "preset" else "right")
    for name, preset in PRESETS.items():
        v = preset["values"]
        label = f"{name} (default)" if name == DEFAULT_PRESET else name
        table.add_row(label, f"{v['beta']:g}", f"{v['learning_rate']:g}", str(v["epochs"]),
                      str(v["grad_accum"]), str(v["warmup_steps"]))
    out.print(table)
    out.print()
    for name, preset in PRESETS.items():
        out.print(f"[bold]{name}[/]: {preset['description']} Risks: {preset['risks']}")
    simpo = ALGO_DEFAULTS["simpo"]
    out.print(f"\n--algo simpo uses its own defaults: beta {simpo['beta']:g}, gamma_beta_ratio "
              f"{simpo['gamma_beta_ratio']:g}, learning rate {simpo['learning_rate']:g}.")
    out.print("Apply one with preset=NAME, e.g. preftune config preset=aggressive; options "
              "given explicitly still win.")


def config_cmd(
    overrides: Annotated[list[str] | None, typer.Argument(
        help="Options as key=value (aliases such as dpo_beta or num_train_epochs work).")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c",
                                               help="A YAML file of options.")] = None,
    show: Annotated[bool, typer.Option("--show", help="List every option with its default "
                                       "and meaning.")] = False,
) -> None:
    """Print the resolved training configuration (YAML), or every option with --show."""
    if show:
        table = Table(box=None, pad_edge=False)
        for name in ("option", "default", "meaning"):
            table.add_column(name)
        for name, field in TrainConfig.model_fields.items():
            default = field.get_default(call_default_factory=True)
            table.add_row(name, escape(repr(default)), escape(field.description or ""))
        out.print(table)
        return
    values = read_config(config) if config else {}
    values.update(parse_overrides(overrides or []))
    print(TrainConfig.build(values).to_yaml(), end="")
