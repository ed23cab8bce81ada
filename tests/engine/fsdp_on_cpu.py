"""`preftune` under accelerate's FSDP2 on CPU processes (gloo): a launch script for tests.

    accelerate launch --config_file examples/accelerate/fsdp.yaml --num_processes 2 \\
        tests/engine/fsdp_on_cpu.py train ...

accelerate never shards on a CPU: under `accelerate launch` its Accelerator(cpu=True) is
MULTI_CPU, which wraps the model in DDP and ignores the FSDP settings. This script builds the
FSDP plugin from those settings (the environment the launcher set from the config file) and
sets accelerate's state to FSDP once the Accelerator exists, so that the loop's FSDP path runs
on CPUs: sharding in prepare, no_sync, clipping over DTensors, gathering state for saving.
It reaches into accelerate's shared state, so a new accelerate may need it updated.
"""

from accelerate import Accelerator, FullyShardedDataParallelPlugin
from accelerate.state import PartialState
from accelerate.utils import DistributedType

import preftune.engine.loop as loop
from preftune.cli.main import main


class FSDPOnCPU(Accelerator):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from FSDP_* variables
        # Every AcceleratorState() built later copies PartialState's type: set both.
        self.state.distributed_type = DistributedType.FSDP
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    def prepare(self, *args, **kwargs):
        from torch.distributed.fsdp import FSDPModule

        prepared = super().prepare(*args, **kwargs)
        model = prepared[0] if isinstance(prepared, list | tuple) else prepared
        units = [type(m).__name__ for m in model.modules() if isinstance(m, FSDPModule)]
        print(f"fsdp units: {' '.join(units)}", flush=True)  # the test reads this line
        return prepared


if __name__ == "__main__":
    loop.Accelerator = FSDPOnCPU
    main()
