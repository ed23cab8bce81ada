"""``preftune rl ...``: the online-RL processes (trajectory API first; more join this group)."""

from __future__ import annotations

from typing import Annotated

import typer

from preftune.cli.common import out

rl_app = typer.Typer(help="Online RL: the trajectory API between environments and trainer.",
                     no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(rl_app, name="rl")


@rl_app.command("api")
def api_cmd(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve the trajectory API (wire-compatible with Atropos): environments send scored
    groups, the trainer pulls batches."""
    from preftune.rl.trajectory_api import serve

    out.print(f"trajectory API on http://{host}:{port}")
    serve(host=host, port=port)
