"""The block a run's optimizer steps run in, for the preference loop and the GRPO loop alike:
SIGTERM checkpoints and stops while it runs, running out of memory is reported with the step
it happened at, and the run's hooks are closed however the block ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from preftune.engine.hooks import RunHooks
from preftune.engine.stop import StopRequest
from preftune.errors import OutOfMemoryError


@contextmanager
def training_steps(stop: StopRequest, hooks: RunHooks | None, steps_done: Callable[[], int],
                   oom_advice: list[str]) -> Iterator[None]:
    """Arm ``stop`` for the block; turn torch's out-of-memory error into ``OutOfMemoryError``
    naming the step that ran out (``steps_done() + 1``); close ``hooks`` (None on processes
    other than the main one) at the end."""
    stop.armed = True
    try:
        yield
    except torch.OutOfMemoryError as e:
        raise OutOfMemoryError(f"out of memory at step {steps_done() + 1}", oom_advice) from e
    finally:
        stop.armed = False
        if hooks is not None:
            hooks.close()
