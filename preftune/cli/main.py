"""The ``preftune`` command: one typer app, one module per command group.

Exit codes: 0 ok · 1 training failed · 2 usage or configuration · 3 invalid data ·
4 model or dependency missing · 5 out of memory. ``-v`` (anywhere) adds tracebacks.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from preftune.cli import compare as compare_cmds
from preftune.cli import config as config_cmds
from preftune.cli import dashboard as dashboard_cmds
from preftune.cli import data as data_cmds
from preftune.cli import dataset as dataset_cmds
from preftune.cli import diagnose as diagnose_cmds
from preftune.cli import graders as graders_cmds
from preftune.cli import jobs as jobs_cmds
from preftune.cli import merge as merge_cmds
from preftune.cli import models as models_cmds
from preftune.cli import plot as plot_cmds
from preftune.cli import rl as rl_cmds
from preftune.cli import service as service_cmds
from preftune.cli import sweep as sweep_cmds
from preftune.cli import train as train_cmds
from preftune.cli import use as use_cmds
from preftune.cli.common import print_error, quiet_libraries, state
from preftune.errors import ExitCode, PreftuneError

app = typer.Typer(
    name="preftune",
    help="Preference fine-tuning for language models: data, training, experiments, service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Show tracebacks and debug output.")] = False,
) -> None:
    if verbose:
        state.verbose = True


train_cmds.register(app)
sweep_cmds.register(app)
use_cmds.register(app)
plot_cmds.register(app)
merge_cmds.register(app)
compare_cmds.register(app)
diagnose_cmds.register(app)
dataset_cmds.register(app)
config_cmds.register(app)
jobs_cmds.register(app)
service_cmds.register(app)
rl_cmds.register(app)
dashboard_cmds.register(app)
app.add_typer(data_cmds.app, name="data")
app.add_typer(models_cmds.app, name="models")
app.add_typer(graders_cmds.app, name="graders")


def _hoist_verbose(args: list[str]) -> list[str]:
    """Accept -v/--verbose anywhere on the line, as people type it after the command too."""
    flags = {"-v", "--verbose"}
    end = args.index("--") if "--" in args else len(args)
    if not any(a in flags for a in args[:end]):
        return args
    return ["--verbose"] + [a for i, a in enumerate(args) if i >= end or a not in flags]


def main(argv: list[str] | None = None) -> None:
    args = _hoist_verbose(list(sys.argv[1:] if argv is None else argv))
    if "--verbose" not in args:
        quiet_libraries()
    try:
        code = app(args=args, prog_name="preftune", standalone_mode=False)
    except PreftuneError as e:
        print_error(e)
        sys.exit(int(e.exit_code))
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as e:  # a bad command line: click-style usage message
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            print(f"error: {e}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)
    except Exception as e:  # anything unforeseen still gets one readable line
        print_error(e)
        sys.exit(ExitCode.TRAINING_FAILED)
    sys.exit(code if isinstance(code, int) else 0)
