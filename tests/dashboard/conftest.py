"""Run directories as people have them: finished runs that learned well and barely, a run
that failed, and a sweep's runs."""

import shutil

import pytest

from preftune.config import TrainConfig
from preftune.engine.hooks import RunHooks
from preftune.engine.loop import train

OPTIONS = {"epochs": 2, "batch_size": 8, "grad_accum": 1, "warmup_steps": 1, "max_length": 256,
           "max_prompt_length": 128, "logging_steps": 1, "eval_split": 0.25, "save_steps": 4}


class FailAt(RunHooks):
    """Raises while step ``step``'s row is logged, as a tracker that breaks mid-run does."""

    def __init__(self, step):
        self.step = step

    def log(self, row):
        if row.get("step") == self.step:
            raise RuntimeError(f"the tracker broke at step {self.step}")


@pytest.fixture(scope="session")
def experiments(sample_pairs, tmp_path_factory):
    """experiments/ with good (lr 2e-3), weak (lr 1e-6), broken (failed at step 3) and
    sweep-lr/runs/{a,b} (copies of good and weak, as a sweep lays them out)."""
    root = tmp_path_factory.mktemp("dashboard") / "experiments"
    for name, lr in (("good", 2e-3), ("weak", 1e-6)):
        train(TrainConfig(dataset=str(sample_pairs), output_dir=str(root / name),
                          learning_rate=lr, **OPTIONS))
    with pytest.raises(RuntimeError):
        train(TrainConfig(dataset=str(sample_pairs), output_dir=str(root / "broken"),
                          learning_rate=2e-3, **OPTIONS), hooks=FailAt(3))
    shutil.copytree(root / "good", root / "sweep-lr" / "runs" / "a")
    shutil.copytree(root / "weak", root / "sweep-lr" / "runs" / "b")
    return root
