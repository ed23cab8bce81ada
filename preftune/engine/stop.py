"""Stopping a run on request: SIGTERM saves a checkpoint after the current step, then stops.

This is how the job service pauses and cancels a training process without losing work, and
what any scheduler that sends SIGTERM before SIGKILL (Slurm, Kubernetes) gets. A SIGTERM
before the first step has nothing to save and stops at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import torch

from preftune.errors import StoppedError


class StopRequest:
    """Whether a stop was asked for; ``armed`` once there are steps worth checkpointing."""

    def __init__(self) -> None:
        self.requested = False
        self.armed = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.armed:
            raise StoppedError("stopped by SIGTERM before the first step; nothing to save")
        self.requested = True

    def agreed(self, accelerator: Any) -> bool:
        """True on every process once any process was asked to stop (they stop together)."""
        if accelerator.num_processes == 1:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)

    def stop_after(self, accelerator: Any, step: int, saved: bool, save: Callable[[], None],
                   resume_command: str) -> None:
        """Once any process was asked to stop, on every process: checkpoint the step just
        taken where it was not ``saved`` already, then raise ``StoppedError`` whose hint is
        ``resume_command``."""
        if not self.agreed(accelerator):
            return
        if not saved:
            save()
        raise StoppedError(f"stopped by SIGTERM after step {step}; checkpoint step-{step} "
                           "saved", [f"continue with: {resume_command}"])


@contextmanager
def stop_on_sigterm() -> Iterator[StopRequest]:
    """A ``StopRequest`` that SIGTERM sets while the block runs (main thread only; elsewhere
    signals cannot be handled and the request simply never comes)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGTERM, stop.handle)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def watch_worker(pid: int, every_s: float = 0.5) -> threading.Thread:
    """Kill this process group once process ``pid`` (the service worker that started it)
    is gone: a worker killed with SIGKILL cannot stop its training process itself, and an
    orphan must not go on writing to a run directory the job's next attempt resumes."""

    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            except PermissionError:
                pass  # alive, another user's (cannot happen for a worker's own child)
            time.sleep(every_s)

    thread = threading.Thread(target=watch, name="preftune-worker-watch", daemon=True)
    thread.start()
    return thread
