"""Process-wide settings: the only module that reads environment variables.

PREFTUNE_CACHE   where built artefacts live (the tiny model, reference log-prob caches);
                 default $XDG_CACHE_HOME/preftune or ~/.cache/preftune.
MLFLOW_TRACKING_URI  the MLflow tracking server the mlflow tracker logs to (default: a store
                 inside the run directory).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    explicit = os.environ.get("PREFTUNE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "preftune"


def mlflow_tracking_uri() -> str | None:
    """The MLflow tracking server the user chose (MLFLOW_TRACKING_URI), or None if unset."""
    return os.environ.get("MLFLOW_TRACKING_URI") or None


def allow_mlflow_file_store() -> None:
    """Let MLflow 3 use a local file store, which it refuses unless opted in.

    preftune opts in only for its own default, the run directory's ``mlruns``; a user's
    explicit choice of the variable is kept.
    """
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
