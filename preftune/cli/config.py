"""``preftune algorithms``, ``preftune presets`` and ``preftune config``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from preftune.cli.common import out
from preftune.config import ALGO_DEFAULTS, DEFAULT_PRESET, PRESETS, TrainConfig, parse_overrides
from preftune.config import read_yaml as read_config
from preftune.losses.table import ALGORITHMS, HYPERPARAMETERS
from preftune.losses.types import LossParams


def register(app: typer.Typer) -> None:
    app.command("algorithms")(algorithms_cmd)
    app.command("presets")(presets_cmd)
    app.command("config")(config_cmd)


def algorithms_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """List the training objectives: reference, data, hyperparameters, start loss, paper."""
    rows: list[dict[str, Any]] = []
    for a in ALGORITHMS.values():
        params = LossParams(**{k: v for k, v in a.defaults.items()
                               if k in LossParams.__dataclass_fields__})
        start = a.start(params)
        rows.append({"name": a.name, "aliases": list(a.aliases),
                     "reference": a.needs_reference, "data": a.data,
                     "hyperparameters": {h: a.defaults.get(h, HYPERPARAMETERS[h].default)
                                         for h in a.hyperparameters},
                     "start_loss": None if start is None else round(start, 4),
                     "description": a.description, "paper": a.paper, "trl": a.trl_name})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="Algorithms (algo=NAME; a mixture: algo=a,b loss_weights=x,y)")
    for name in ("algo", "reference", "data", "start loss", "reads", "description"):
        table.add_column(name)
    for row in rows:
        shown = "data-dependent" if row["start_loss"] is None else f"{row['start_loss']:g}"
        reads = ", ".join(row["hyperparameters"])
        name = row["name"] + (f" ({', '.join(row['aliases'])})" if row["aliases"] else "")
        table.add_row(escape(name), "yes" if row["reference"] else "no", row["data"], shown,
                      escape(reads), escape(row["description"]))
    out.print(table)
    out.print("Start loss: the loss at the first step, where policy = reference, with the "
              "algorithm's defaults. Papers: preftune algorithms --json.")


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
    out.print()
    for algo, defaults in ALGO_DEFAULTS.items():
        values = ", ".join(f"{k} {v:g}" for k, v in defaults.items())
        out.print(f"--algo {algo} uses its own defaults: {values}.")
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
