"""What the processes of a run under ``accelerate launch`` do together: each one's share of a
step, states gathered from FSDP shards, checkpoints every process takes part in, and calls
only the main process makes.

With one process each of these is the plain single-process operation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast_object_list

from preftune.engine.checkpoint import Position, save_checkpoint
from preftune.errors import PreftuneError
from preftune.rundir import RunDir

T = TypeVar("T")


def process_share(step: list[int], size: int, accelerator: Accelerator) -> list[list[int]]:
    """This process's micro-batches of a step's items: every P-th item, cut into micro-batches
    of ``size``. Every process gets as many micro-batches as the busiest one (an idle one's
    are empty): FSDP gathers parameters in each forward pass, and DDP synchronises on the last
    backward, so all must take part."""
    processes = accelerator.num_processes
    mine = step[accelerator.process_index::processes]
    count = math.ceil(math.ceil(len(step) / processes) / size)
    return [mine[k * size:(k + 1) * size] for k in range(count)]


def summed_over_processes(accelerator: Accelerator, sums: dict[str, float]) -> dict[str, float]:
    """Each key's sum over all processes (every process must hold the same keys)."""
    if accelerator.num_processes == 1:
        return sums
    keys = sorted(sums)
    total = accelerator.reduce(torch.tensor([sums[k] for k in keys], device=accelerator.device),
                               "sum")
    return dict(zip(keys, total.tolist(), strict=True))


def on_main(accelerator: Accelerator, call: Callable[[], T]) -> T:
    """``call()`` made by the main process only, its result sent to every process. A
    preftune error it raises is raised on every process, which would otherwise wait for the
    main one forever."""
    if accelerator.num_processes == 1:
        return call()
    outcome: list[Any] = [None]
    failed: PreftuneError | None = None
    if accelerator.is_main_process:
        try:
            outcome[0] = ("ok", call())
        except PreftuneError as e:
            failed = e
            outcome[0] = ("error", type(e), e.message, e.hints)
    broadcast_object_list(outcome)
    if failed is not None:
        raise failed
    if outcome[0][0] == "error":
        _, kind, message, hints = outcome[0]
        raise kind(message, hints)
    return outcome[0][1]


def gathered_policy_state(accelerator: Accelerator,
                          model: Any) -> dict[str, torch.Tensor] | None:
    """Under FSDP, the policy's whole state dict, gathered from the shards of every process
    (all must call this; only the main one gets the tensors). ``model`` is the prepared module
    that holds the policy as ``lm``. Otherwise None: each process holds the whole policy, and
    ``save_pretrained`` reads it directly."""
    if accelerator.distributed_type != DistributedType.FSDP:
        return None
    state = accelerator.get_state_dict(model)  # the wrapper's keys: "lm." + the policy's
    return {key.removeprefix("lm."): value for key, value in state.items()}


def gathered_optimizer_state(accelerator: Accelerator, model: Any,
                             optimizer: Any) -> dict[str, Any]:
    """The optimizer state to save; under FSDP gathered whole from every process's shards
    (all must call this) and keyed by parameter name."""
    if accelerator.distributed_type != DistributedType.FSDP:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer.optimizer, options=StateDictOptions(
        full_state_dict=True, cpu_offload=True))


def load_optimizer_state(accelerator: Accelerator, model: Any, optimizer: Any,
                         state: dict[str, Any]) -> None:
    """Restore what ``gathered_optimizer_state`` saved; under FSDP each process keeps its shard."""
    if accelerator.distributed_type != DistributedType.FSDP:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer.optimizer, state,
                             options=StateDictOptions(full_state_dict=True))


def save_checkpoint_all(accelerator: Accelerator, run: RunDir, model: Any, policy: Any,
                        optimizer: Any, scheduler: Any, position: Position, progress: float | None,
                        keep: int | None) -> None:
    """Checkpoint ``step-<step>``: every process takes part in gathering the state, the main
    one writes it (``checkpoint.save_checkpoint``), and all go on together once it is durable.
    ``model`` is the prepared module, ``policy`` the model it wraps."""
    weights = gathered_policy_state(accelerator, model)
    optimizer_state = gathered_optimizer_state(accelerator, model, optimizer)
    if accelerator.is_main_process:
        save_checkpoint(run, f"step-{position.step}", policy, optimizer_state, scheduler,
                        position, progress, keep, weights)
    accelerator.wait_for_everyone()
