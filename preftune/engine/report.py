"""What a run reports as it goes, and what it returns: no torch here, so the CLI starts fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, float]  # the last training row logged, and the last evaluation
    first_metrics: dict[str, float] = field(default_factory=dict)  # the first row logged
    steps: int = 0
    seconds: float = 0.0
    diagnosis: dict[str, Any] | None = None  # diagnosis.json: verdict, summary, findings
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds per phase, in order


class Reporter:
    """What the loop tells the person watching; the CLI draws it, the library stays quiet."""

    def data(self, data: Any) -> None: ...
    def reference(self, pairs: int, cached: bool) -> None: ...
    def start(self, total_steps: int, done_steps: int) -> None: ...
    def step(self, row: dict[str, float]) -> None: ...
    def evaluation(self, row: dict[str, float]) -> None: ...
    def warning(self, finding: Any) -> None: ...
    def finish(self, result: RunResult) -> None: ...
