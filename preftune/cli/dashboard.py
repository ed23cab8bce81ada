"""``preftune dashboard``: watch, compare, diagnose and chat with runs in a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from preftune.cli.common import err, out
from preftune.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_cmd)


def dashboard_cmd(
    dirs: Annotated[list[Path] | None, typer.Argument(
        metavar="[DIR]...", help="Directories holding runs (searched 4 levels deep, sweeps "
        "grouped), or run directories; default experiments/.", show_default=False)] = None,
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 8686,
    host: Annotated[str, typer.Option(help="Address to bind; anything but 127.0.0.1 shows "
                                           "your runs, and lets anyone chat with their "
                                           "models, on the network.")] = "127.0.0.1",
) -> None:
    """Serve a read-only web view of run directories: live curves, diagnoses, comparisons,
    sweeps, checkpoints, model cards, and chat with a run beside its base model."""
    import socket

    import uvicorn

    from preftune.dashboard.app import create_app

    roots = dirs or [Path("experiments")]
    missing = [d for d in roots if not d.is_dir()]
    if missing:
        raise UsageError(f"{escape(str(missing[0]))} is not a directory",
                         ["pass the directories your runs are in (default experiments/, "
                          "where preftune train writes them)"])
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a port number (0 to 65535)")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}",
                         ["choose another --port (0: any free one)"]) from e
    bound = sock.getsockname()[1]
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"note: listening on {host}: anyone who can reach this address sees your "
                  "runs and can chat with their models")
    out.print(f"preftune dashboard on http://{'127.0.0.1' if host == '0.0.0.0' else host}:"
              f"{bound}/ (runs under {escape(', '.join(str(d) for d in roots))}; Ctrl+C "
              "stops it)")
    server = uvicorn.Server(uvicorn.Config(create_app(roots), log_level="warning"))
    server.run(sockets=[sock])
