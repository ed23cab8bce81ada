"""``preftune pipeline``: the service's whole path in one process, without HTTP.

File registration, validation, the job row, the queue claim, the worker and run tracking run
as they do behind ``preftune serve``, on an embedded SQLite database, so a problem in the
service path shows up (with the training process's output on the console) without a server.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preftune import settings
from preftune.config import normalize_algo
from preftune.errors import ConfigError, ExitCode, UsageError
from preftune.service import queue
from preftune.service.auth import ensure_tenant
from preftune.service.db import Database, Job
from preftune.service.jobspec import build_spec
from preftune.service.limits import ServiceConfig
from preftune.service.store import Store, display_name
from preftune.service.validation import validate_once
from preftune.service.worker import Worker, new_worker_id

TENANT = "local"


@dataclass(frozen=True)
class PipelineResult:
    job: Job
    exit_code: int
    run_dir: Path


def register_local_file(db: Database, store: Store, tenant_id: str, path: Path) -> str:
    """Copy a local data file into the store as a ``fine-tune`` file; its id."""
    if not path.is_file():
        raise UsageError(f"dataset not found: {path}",
                         ["write a sample with: preftune sample --output data.jsonl"])
    file_id = queue.new_id("file")
    with path.open("rb") as f, store.saving(file_id, iter(lambda: f.read(1 << 20), b""),
                                            path.name, limit=1 << 40) as (name, size):
        queue.add_file(db, file_id, tenant_id, display_name(path.name), "fine-tune", size,
                       name)
    return file_id


def run_pipeline(root: Path, dataset: Path, values: dict[str, Any],
                 eval_dataset: Path | None = None, stop: threading.Event | None = None,
                 echo: Callable[[str], None] | None = None) -> PipelineResult:
    """Run one job through queue, worker and tracking; the exit code mirrors its outcome
    (0 succeeded; otherwise the training process's code, 3 for files that fail validation).
    """
    say = echo or (lambda line: None)
    stop = stop or threading.Event()
    db = Database(f"sqlite:///{root / 'preftune.db'}")
    try:
        db.migrate()
        store = Store(root)
        tenant_id = ensure_tenant(db, TENANT)
        values = dict(values)
        model = str(values.pop("model", "tiny"))
        try:
            algo = normalize_algo(values.pop("algo", "dpo"))
        except ValueError as e:
            raise ConfigError(f"invalid configuration: {e}", []) from None
        method: dict[str, Any] = {"type": algo}
        if not isinstance(algo, str):  # a mixture: its parts travel as hyperparameters
            weights = values.pop("loss_weights", None)
            method = {"type": "mixture", "mixture": {"hyperparameters": {
                "loss_type": list(algo), **({"loss_weights": weights} if weights else {})}}}
        spec = build_spec(model, method, values, seed=None)
        training = register_local_file(db, store, tenant_id, dataset)
        validation = (register_local_file(db, store, tenant_id, eval_dataset)
                      if eval_dataset is not None else None)
        say(f"files: {training}" + (f", {validation}" if validation else ""))
        job, _ = queue.enqueue(db, tenant_id=tenant_id, model=model, training_file=training,
                               validation_file=validation, method=spec.method,
                               config=spec.config, seed=int(spec.config["seed"]))
        say(f"job {job.id}: validating_files")
        worker_id = new_worker_id()
        validate_once(db, store, worker_id, lease_s=60.0)
        job = queue.get_job(db, None, job.id)
        if job.status == "failed":
            return PipelineResult(job, ExitCode.INVALID_DATA, store.run_dir(job.id))
        say(f"job {job.id}: queued")
        # The user runs their own job here: their environment (a hub token, tracker keys)
        # reaches training whole, as it would under `preftune train`.
        own = ServiceConfig(pass_env=settings.environment_names())
        worker = Worker(db, store, worker_id=worker_id, lease_s=60.0, poll_s=0.2, echo=say,
                        config=own)
        queue.register_worker(db, worker_id, socket.gethostname(), os.getpid())
        lease = queue.claim_run(db, worker_id, lease_s=60.0)
        if lease is None:
            raise UsageError(f"job {job.id} could not be claimed from the queue")
        code = worker.run_job(lease, stop)
        queue.unregister_worker(db, worker_id)
        job = queue.get_job(db, None, job.id)
        if job.status == "succeeded":
            exit_code: int = ExitCode.OK
        elif job.status in ("paused", "queued", "cancelled"):
            exit_code = 130
        else:
            exit_code = code if code else ExitCode.TRAINING_FAILED
        return PipelineResult(job, int(exit_code), store.run_dir(job.id))
    finally:
        db.dispose()
