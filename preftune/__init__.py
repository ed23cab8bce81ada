"""preftune: preference fine-tuning for language models.

The public API::

    from preftune import TrainConfig, load_preferences, validate

    data = load_preferences("pairs.json")          # PreferenceDataset, or DataError
    report, data = validate("pairs.jsonl")         # every problem, counts, lengths
    cfg = TrainConfig(model_name="tiny", dpo_beta=0.2, preset="quick")
    result = Trainer(cfg).train(data)              # RunResult: run_dir, metrics
"""

from importlib import metadata
from typing import TYPE_CHECKING, Any

from preftune.config import PRESETS, TrainConfig
from preftune.data.formats import FORMATS, FieldNames
from preftune.data.reader import read_preferences
from preftune.data.records import Message, PreferenceDataset, PreferencePair, Problem
from preftune.data.validate import ValidationReport, load_preferences, validate
from preftune.errors import ExitCode, PreftuneError

if TYPE_CHECKING:
    from preftune.losses import LOSSES
    from preftune.sampler import Sampler
    from preftune.trainer import Trainer


def __getattr__(name: str) -> Any:
    """``Trainer``, ``Sampler`` and ``LOSSES`` import torch: load them on first use;
    ``__version__`` is the installed distribution's (pyproject.toml's), read when asked."""
    if name == "__version__":
        return metadata.version("preftune")
    if name == "Trainer":
        from preftune.trainer import Trainer

        return Trainer
    if name == "Sampler":
        from preftune.sampler import Sampler

        return Sampler
    if name == "LOSSES":
        from preftune.losses import LOSSES

        return LOSSES
    raise AttributeError(f"module 'preftune' has no attribute {name!r}")

__all__ = [
    "FORMATS",
    "PRESETS",
    "ExitCode",
    "FieldNames",
    "LOSSES",
    "Message",
    "PreferenceDataset",
    "PreferencePair",
    "PreftuneError",
    "Problem",
    "Sampler",
    "TrainConfig",
    "Trainer",
    "ValidationReport",
    "load_preferences",
    "read_preferences",
    "validate",
]
