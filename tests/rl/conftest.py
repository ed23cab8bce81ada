"""tests/rl: the step-keyed stand-in for the trajectory API (trajectory_standin.py)."""

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def standin():
    """The trajectory_standin module: ``create_standin`` and ``scored_batches``."""
    path = Path(__file__).with_name("trajectory_standin.py")
    spec = importlib.util.spec_from_file_location("trajectory_standin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
