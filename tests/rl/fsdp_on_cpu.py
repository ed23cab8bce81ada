"""`preftune rl train` under accelerate's FSDP2 on CPU processes (gloo): a launch script for
tests, as tests/engine/fsdp_on_cpu.py is for `preftune train`, whose Accelerator (FSDP forced
on, since accelerate never shards on a CPU) it sets into the GRPO trainer.

    accelerate launch --config_file examples/accelerate/fsdp.yaml --num_processes 2 \\
        tests/rl/fsdp_on_cpu.py rl train ...
"""

import importlib.util
from pathlib import Path

import preftune.rl.train as grpo
from preftune.cli.main import main

ENGINE = Path(__file__).resolve().parents[1] / "engine" / "fsdp_on_cpu.py"

if __name__ == "__main__":
    spec = importlib.util.spec_from_file_location("engine_fsdp_on_cpu", ENGINE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    grpo.Accelerator = module.FSDPOnCPU
    main()
