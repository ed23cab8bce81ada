"""preftune: preference fine-tuning for language models.

The public API::

    from preftune import TrainConfig, load_preferences, validate

    data = load_preferences("pairs.json")          # PreferenceDataset, or DataError
    report, data = validate("pairs.jsonl")         # every problem, counts, lengths
    cfg = TrainConfig(model_name="tiny", dpo_beta=0.2, preset="quick")
"""

from preftune.config import PRESETS, TrainConfig
from preftune.data.formats import FORMATS, FieldNames
from preftune.data.reader import read_preferences
from preftune.data.records import Message, PreferenceDataset, PreferencePair, Problem
from preftune.data.validate import ValidationReport, load_preferences, validate
from preftune.errors import ExitCode, PreftuneError

__version__ = "0.1.0"

__all__ = [
    "FORMATS",
    "PRESETS",
    "ExitCode",
    "FieldNames",
    "Message",
    "PreferenceDataset",
    "PreferencePair",
    "PreftuneError",
    "Problem",
    "TrainConfig",
    "ValidationReport",
    "load_preferences",
    "read_preferences",
    "validate",
]
