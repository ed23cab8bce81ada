"""What every command shares: the consoles, the verbose flag, and error printing."""

from __future__ import annotations

import os
import traceback
import warnings

from rich.console import Console
from rich.markup import escape

from preftune.errors import PreftuneError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class State:
    verbose = False


state = State()


def quiet_libraries() -> None:
    """Silence the libraries' progress bars and deprecation chatter (kept with -v)."""
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def print_error(error: BaseException) -> None:
    """``error:`` and ``hint:`` lines; the traceback too when -v was given."""
    if state.verbose:
        err.print(escape("".join(traceback.format_exception(error))), end="")
    if isinstance(error, PreftuneError):
        err.print(f"[bold red]error:[/] {escape(error.message)}")
        for line in error.details:
            err.print(f"  {escape(line)}")
        for hint in error.hints:
            err.print(f"[yellow]hint:[/] {escape(hint)}")
    else:
        err.print(f"[bold red]error:[/] unexpected {type(error).__name__}: {escape(str(error))}")
        if not state.verbose:
            err.print("[yellow]hint:[/] run again with -v to see the traceback")


def warn_lone_accelerate_process() -> None:
    """Say so when `accelerate launch` started one process where several were asked for."""
    from preftune import settings

    if settings.lone_accelerate_process():
        err.print("[yellow]warning:[/] accelerate launch started one process, not the several "
                  "asked for, as it does unless it finds two GPUs or is given --multi_gpu; on "
                  "CPUs add --multi_gpu (docs/scaling.md)")
