"""Fixtures shared by the merge and export tests."""

import json

import pytest

from preftune.config import TrainConfig
from preftune.data.sample import iter_samples
from preftune.engine.loop import train


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory):
    """A 3-step LoRA run on the tiny model: logs every step, checkpoints at step 2 and at the
    end, and evaluates at the end."""
    tmp = tmp_path_factory.mktemp("lora-run")
    data = tmp / "pairs.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for s in iter_samples(16, seed=1):
            f.write(json.dumps({"prompt": s.prompt, "chosen": s.responses[0],
                                "rejected": s.responses[-1]}) + "\n")
    train(TrainConfig(dataset=str(data), output_dir=str(tmp / "run"), max_steps=3,
                      batch_size=4, grad_accum=1, learning_rate=2e-3, max_length=256,
                      max_prompt_length=128, eval_split=0.25, logging_steps=1,
                      save_steps=2))
    return tmp / "run"
