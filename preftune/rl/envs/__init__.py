"""Environments for online RL: items in, scored groups out to the trajectory API or a file.

``base.Environment`` is the sampling, scoring and sending loop; ``dataset.DatasetEnvironment``
takes its items from a dataset. ``preftune.rl.envconfig`` loads their YAML configs.
"""

from preftune.rl.envs.base import EnvConfig, Environment, EvalReport, Item, ScoredGroup
from preftune.rl.envs.dataset import DatasetEnvConfig, DatasetEnvironment

__all__ = ["DatasetEnvConfig", "DatasetEnvironment", "EnvConfig", "Environment", "EvalReport",
           "Item", "ScoredGroup"]
