"""Process-wide settings: the only module that reads environment variables.

PREFTUNE_CACHE   where built artefacts live (the tiny model, reference log-prob caches);
                 default $XDG_CACHE_HOME/preftune or ~/.cache/preftune.
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
