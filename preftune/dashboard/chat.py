"""Chat with a run: its final model or a checkpoint, and the base model it started from, each
answering the same conversation through ``Sampler``.

Loaded models are kept (the last ``KEEP``), so each turn costs one generation, not a load.
Generations run one at a time: a laptop or one GPU has no room for two at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from preftune.sampler import Sampler

KEEP = 3


class Chats:
    def __init__(self) -> None:
        self._samplers: OrderedDict[tuple[str, str | None], Sampler] = OrderedDict()
        self._lock = threading.Lock()

    def reply(self, source: str | Path, checkpoint: str | None, messages: list[dict[str, str]],
              temperature: float, max_tokens: int, seed: int | None) -> str:
        """The model's next message in ``messages`` (``{role, content}`` dicts)."""
        with self._lock:
            sampler = self._sampler(str(source), checkpoint)
            sampler.temperature, sampler.max_tokens = temperature, max_tokens
            if seed is not None:
                import torch

                sampler.generator = torch.Generator().manual_seed(seed)
            prompt: Any = messages
            return sampler.complete(prompt)

    def _sampler(self, source: str, checkpoint: str | None) -> Sampler:
        key = (source, checkpoint)
        if key in self._samplers:
            self._samplers.move_to_end(key)
            return self._samplers[key]
        sampler = Sampler(source, checkpoint=checkpoint)
        self._samplers[key] = sampler
        while len(self._samplers) > KEEP:
            self._samplers.popitem(last=False)
        return sampler
