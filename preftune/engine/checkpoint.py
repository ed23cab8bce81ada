"""Checkpoints that survive a crash: written whole, synced, renamed, then recorded.

``checkpoints/<name>/model`` holds the weights (or the LoRA adapter) in ``save_pretrained``
form; ``checkpoints/<name>/trainer_state.pt`` holds the optimizer, the scheduler, every RNG
state and the data position, so that a resumed run takes exactly the steps the interrupted
one would have taken.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from preftune.fsutil import atomic_dir
from preftune.rundir import RunDir

STATE_FILE = "trainer_state.pt"


@dataclass(frozen=True)
class Position:
    """Where training stands: optimizer steps taken, overall and within the current epoch."""

    epoch: int  # the epoch in progress (0-based)
    epoch_step: int  # optimizer steps already taken in that epoch
    step: int  # optimizer steps taken in all


def save_checkpoint(run: RunDir, name: str, model: Any, optimizer_state: dict[str, Any],
                    scheduler: Any, position: Position, epoch_progress: float | None,
                    keep: int | None, weights: dict[str, torch.Tensor] | None = None) -> None:
    """Write checkpoint ``name`` and, once it is durable, append its manifest row.

    ``epoch_progress`` (epochs done, 1.5 = half-way through the second) is None for a trainer
    that has no epochs (GRPO: the environment decides what data it sees); the row's ``epoch``
    is then null rather than a number that would read as one.

    ``weights`` is the model's state dict where ``model`` does not hold it whole (FSDP shards);
    None saves the model's own parameters.
    """
    with atomic_dir(run.checkpoint_dir(name)) as tmp:
        model.save_pretrained(tmp / "model", state_dict=weights)
        torch.save({"optimizer": optimizer_state, "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(), "position": asdict(position)}, tmp / STATE_FILE)
    relative = f"checkpoints/{name}"
    epoch = None if epoch_progress is None else round(epoch_progress, 4)
    run.add_checkpoint({"name": name, "epoch": epoch, "step": position.step,
                        "state_path": relative, "model_path": f"{relative}/model"}, keep)


def load_state(run: RunDir, row: dict[str, Any]) -> tuple[dict[str, Any], Position]:
    """The trainer state of a manifest row, and its position."""
    state = torch.load(run.path / row["state_path"] / STATE_FILE, weights_only=False)
    return state, Position(**state["position"])


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.random.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.random.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
