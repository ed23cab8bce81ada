"""Where a run's time goes: wall seconds per phase, summed over the run.

Phases: ``load`` (tokenizer and models), ``tokenize`` (read, validate, tokenize the data),
``reference`` (reference log-probs before training, cached or computed), ``forward`` (the
policy's forward pass and the loss), ``backward``, ``optimizer`` (clip, step, schedule,
zero_grad), ``logging`` (metric rows, trackers, live checks), ``evaluation``, ``checkpoint``
and ``final`` (final weights, plots, diagnosis). What falls between phases is not counted.

On a GPU kernels run after the Python that launched them, so each phase starts and ends with
a device synchronize: a phase is charged for its own kernels, not for the next one's wait.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

ORDER = ("load", "tokenize", "reference", "forward", "backward", "optimizer", "logging",
         "evaluation", "checkpoint", "final")


class PhaseClock:
    def __init__(self, device: torch.device | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self._sync = device is not None and device.type == "cuda"

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self._sync:
            torch.cuda.synchronize()
        started = time.perf_counter()
        try:
            yield
        finally:
            if self._sync:
                torch.cuda.synchronize()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def summary(self) -> dict[str, float]:
        """Seconds per phase in run order, rounded to milliseconds; phases not reached left out."""
        return {name: round(self.seconds[name], 3) for name in ORDER if name in self.seconds}
