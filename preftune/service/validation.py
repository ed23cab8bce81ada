"""Validating a job's files (``validating_files``) in a child process, under the operator's
memory and time limits, its validation lease renewed while it runs.

A training file is the tenant's, and a small one can decode to a great deal: 40 KB of parquet
holding one 1 KB string 300,000 times is 300 MB of text once read. So no service process reads
one itself: ``validate_once`` starts ``python -c _BOOT`` in a session of its own, which limits
its own memory (``limits.validation_memory_mb``) before it imports anything, reads the files as
training will (``jobspec.validate_files``), counts the examples and writes ``result.json``. The
parent kills the child's group after ``limits.validation_timeout_s``, renews the lease every
third of ``lease_s`` (so a slow file is never validated twice at once), and kills the child
when the renewal fails: the job was cancelled, or another validator holds it now.

The result becomes the job's outcome: queued, or failed with an error whose code says why
(``invalid_training_file`` ..., ``validation_memory_exceeded``, ``validation_timeout``,
``limit_exceeded``) and whose message names the limit and who can raise it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import update

from preftune import settings
from preftune.errors import PreftuneError
from preftune.fsutil import write_json
from preftune.service import queue
from preftune.service.db import Database, Job
from preftune.service.limits import Limits, plan_over_limits
from preftune.service.store import Store

log = logging.getLogger(__name__)

MEMORY_EXIT = 75  # the child's exit code when an allocation failed under its limit

# The child: its memory limit first, so that the limit covers its imports too (importing
# preftune imports torch), then ``child``. RLIMIT_DATA, not RLIMIT_AS: the address space counts
# every shared library mapped read-only, and reservations never touched. Measured with CPU
# torch, the imports need 930 MiB of address space against 300 MiB of data; a CUDA build of
# torch maps its much larger CUDA libraries too, which an address-space limit would count
# against the file and a data limit does not. RLIMIT_DATA counts what a decoded file takes:
# the private writable memory of the heap, Arrow's buffers and thread stacks.
#
# A child whose parent dies (a SIGKILLed API) stops too: nothing else would bound it, as it
# runs in a session of its own.
_BOOT = f"""\
import os, resource, sys, threading, time
limit = int(sys.argv[2]) * 2**20
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
def watch(parent=int(sys.argv[3])):
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(70)
threading.Thread(target=watch, daemon=True).start()
try:
    from preftune.service.validation import child
    child(sys.argv[1])
except MemoryError:
    sys.exit({MEMORY_EXIT})
"""
# How a failed allocation reads where the library fails for itself (an abort, a loader or
# OpenBLAS message), not with Python's MemoryError.
_OUT_OF_MEMORY = re.compile(r"MemoryError|bad_alloc|[Cc]annot allocate memory|"
                            r"[Mm]emory allocation|failed to map segment")


def child_command(work: Path, memory_mb: int) -> list[str]:
    """The validation child's command line, for the request in ``work``."""
    return [sys.executable, "-c", _BOOT, str(work), str(memory_mb), str(os.getpid())]


def validate_once(db: Database, store: Store, worker_id: str, lease_s: float,
                  limits: Limits | None = None, *,
                  tick: Callable[[], object] | None = None) -> bool:
    """Validate the files of the oldest job waiting for it; False when none waits.

    ``tick`` is called while the child runs (the caller's other duties, such as reaping
    dead workers' jobs). A job whose lease was lost meanwhile is left to its new holder.
    """
    job = queue.claim_validation(db, worker_id, lease_s)
    if job is None:
        return False
    limits = limits or Limits()
    request, error = _request(db, store, job, limits)
    if error is None:
        def keep_lease() -> bool:
            return renew_validation(db, job.id, worker_id, lease_s)

        result = run_child(request, limits, keep_lease, lease_s / 3, tick)
        if result is None:
            return True  # cancelled, or another validator holds the job: not ours to finish
        error = result.get("error") or plan_error(job.config, result["examples_per_epoch"],
                                                  limits)
    queue.finish_validation(db, job.id, worker_id, error)
    return True


def renew_validation(db: Database, job_id: str, worker_id: str, lease_s: float) -> bool:
    """Extend ``worker_id``'s validation lease on the job; False when it no longer holds it
    (the job was cancelled, or the lease expired and was taken)."""
    with db.session() as session:
        result = session.execute(
            update(Job).where(Job.id == job_id, Job.status == "validating_files",
                              Job.lease_owner == worker_id)
            .values(lease_expires_at=time.time() + lease_s))
        return bool(getattr(result, "rowcount", 0) == 1)


def _request(db: Database, store: Store, job: Job, limits: Limits
             ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What the child needs (config, file paths, memory limit), or the error of a file
    deleted before the job started."""
    paths: dict[str, str | None] = {"training_file": None, "validation_file": None}
    for param, file_id in (("training_file", job.training_file),
                           ("validation_file", job.validation_file)):
        if file_id is None:
            continue
        try:
            paths[param] = str(store.file_path(
                queue.file_row(db, job.tenant_id, file_id).storage_name))
        except queue.NotFound:
            return {}, {"code": f"invalid_{param}", "param": param,
                        "message": f"file {file_id} was deleted before the job started"}
    return {"config": job.config, "training": paths["training_file"],
            "validation": paths["validation_file"],
            "memory_mb": limits.validation_memory_mb}, None


def run_child(request: dict[str, Any], limits: Limits, keep_lease: Callable[[], bool],
              renew_every_s: float, tick: Callable[[], object] | None = None
              ) -> dict[str, Any] | None:
    """Validate in a child process: its result (``error``, ``examples_per_epoch``), an error
    for a child over a limit, or None when ``keep_lease`` said the job is not ours any more.
    """
    with tempfile.TemporaryDirectory(prefix="preftune-validate-") as tmp:
        work = Path(tmp)
        write_json(work / "request.json", request)
        with (work / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                child_command(work, limits.validation_memory_mb), cwd=work,
                env=_child_env(work), stdin=subprocess.DEVNULL, stdout=stderr,
                stderr=stderr, start_new_session=True)
        try:
            ended = _wait(process, limits.validation_timeout_s, keep_lease, renew_every_s,
                          tick)
        finally:
            if process.poll() is None:  # timed out, lease lost, or the caller is failing
                _kill(process)
        if ended == "lease lost":
            return None
        # Which file a limit was hit on is unknown when there are two.
        param = "training_file" if request["validation"] is None else None
        if ended == "timeout":
            return {"error": timeout_error(limits, param)}
        result = work / "result.json"
        if process.returncode == 0 and result.exists():
            return dict(json.loads(result.read_text(encoding="utf-8")))
        return {"error": _crash_error(process.returncode, work / "stderr.log", limits, param)}


def _wait(process: subprocess.Popen[bytes], timeout_s: float, keep_lease: Callable[[], bool],
          renew_every_s: float, tick: Callable[[], object] | None) -> str:
    """Wait for the child: ``exited``, ``timeout`` or ``lease lost``."""
    start = time.monotonic()
    next_renew = start + renew_every_s
    while True:
        try:
            process.wait(timeout=min(0.1, renew_every_s))
            return "exited"
        except subprocess.TimeoutExpired:
            pass
        t = time.monotonic()
        if t - start >= timeout_s:
            return "timeout"
        if t >= next_renew:
            if not keep_lease():
                return "lease lost"
            next_renew = t + renew_every_s
        if tick is not None:
            tick()


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _child_env(work: Path) -> dict[str, str]:
    """A training process's clean environment (no credentials: the child reads tenant
    data), with one thread per math library: OpenBLAS reserves buffers per thread, and on
    a machine of many cores those alone would pass a small memory limit."""
    return {**settings.training_env(work), "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _crash_error(code: int, stderr_path: Path, limits: Limits,
                 param: str | None) -> dict[str, Any]:
    """The error of a child that exited without a result: over its memory limit (it said so,
    or a signal ended it: an abort from a failed allocation, the kernel's OOM killer), or
    failed otherwise (its output goes to the server log, not to the tenant: it names paths)."""
    try:
        output = stderr_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        output = ""
    if code == MEMORY_EXIT or code < 0 or _OUT_OF_MEMORY.search(output):
        return memory_error(limits, param)
    log.warning("file validation failed with exit code %s:\n%s", code, output[-4000:])
    return {"code": "validation_error", "param": param,
            "message": f"the files could not be validated: the validation process exited with "
                       f"code {code}; the operator finds its output in the server log"}


def memory_error(limits: Limits, param: str | None) -> dict[str, Any]:
    mb = limits.validation_memory_mb
    return {"code": "validation_memory_exceeded", "param": param,
            "message": f"validating the files needed more than validation_memory_mb={mb} MiB; "
                       "use a smaller file, or ask the operator to raise the limit in the "
                       "service config (limits.validation_memory_mb) or with "
                       "--validation-memory-mb"}


def timeout_error(limits: Limits, param: str | None) -> dict[str, Any]:
    s = limits.validation_timeout_s
    return {"code": "validation_timeout", "param": param,
            "message": f"validating the files took longer than validation_timeout_s={s:g} s; "
                       "use a smaller file, or ask the operator to raise the limit in the "
                       "service config (limits.validation_timeout_s) or with "
                       "--validation-timeout-s"}


def plan_error(config: dict[str, Any], examples_per_epoch: int,
               limits: Limits) -> dict[str, Any] | None:
    """The error of a job whose plan is over a limit (examples, tokens, optimizer steps), or
    None. ``config`` is the job's stored TrainConfig values.

    Examples are epochs x examples per epoch, or fewer when max_steps stops training first
    (max_steps x batch_size x grad_accum); tokens are examples x max_length x 2 (prompt with
    chosen, prompt with rejected, at most max_length each); steps are
    ceil(examples per epoch / (batch_size x grad_accum)) per epoch, or max_steps. A
    reinforcement job's plan is ``rft.plan_error``'s.
    """
    if config.get("method") == "reinforcement":
        from preftune.service import rft

        return rft.plan_error(config, examples_per_epoch, limits)
    epochs, batch = int(config["epochs"]), int(config["batch_size"])
    accum, max_steps = int(config["grad_accum"]), config.get("max_steps")
    per_step = batch * accum
    steps = math.ceil(examples_per_epoch / per_step) * epochs
    examples = epochs * examples_per_epoch
    how = f"{epochs} epochs x {examples_per_epoch} examples"
    if max_steps:
        steps = min(steps, int(max_steps))
        if int(max_steps) * per_step < examples:
            examples = int(max_steps) * per_step
            how = f"max_steps={max_steps} x batch_size={batch} x grad_accum={accum}"
    tokens = examples * int(config["max_length"]) * 2
    checks = [
        ("max_examples", examples, f"{examples} training examples ({how})",
         "train fewer epochs, set max_steps, or use a smaller file"),
        ("max_tokens", tokens, f"{tokens} tokens ({examples} examples x max_length="
         f"{config['max_length']} x 2)", "lower max_length, train fewer epochs or examples"),
        ("max_steps", steps, f"{steps} optimizer steps (ceil({examples_per_epoch} examples / "
         f"(batch_size={batch} x grad_accum={accum})) x {epochs} epochs)",
         "set max_steps, or raise batch_size or grad_accum"),
    ]
    return plan_over_limits(checks, limits)


# ------------------------------------------------------------------------------ the child


def child(work: str) -> None:
    """Do the request in ``work`` (its ``task``: ``files`` by default, ``report`` or
    ``estimate``); write ``result.json`` there."""
    folder = Path(work)
    request = json.loads((folder / "request.json").read_text(encoding="utf-8"))
    training = Path(request["training"])
    validation = Path(request["validation"]) if request["validation"] else None
    task = request.get("task", "files")
    if task == "report":
        result = report_file(training, request["filename"], request["max_problems"])
    elif task == "estimate":
        result = estimate_plan(request["config"], training, validation, folder / "run")
    else:
        result = check_files(request["config"], training, validation)
    write_json(folder / "result.json", result)


def check_files(config: dict[str, Any], training: Path, validation: Path | None
                ) -> dict[str, Any]:
    """``{"error": ...}`` for files training would refuse, else the training examples one
    epoch steps over (``examples_per_epoch``).

    The training file is read twice: ``validate_files`` keeps the errors' wording, the count
    needs the dataset it does not return (the second read finds the file in the page cache).
    """
    if config.get("method") == "reinforcement":
        from preftune.service import rft

        return rft.check_files(config, training, validation)
    from preftune.config import TrainConfig
    from preftune.data.records import PreferenceDataset
    from preftune.engine.data import read_data
    from preftune.losses.table import data_kind
    from preftune.service.jobspec import validate_files

    error = validate_files(config, training, validation)
    if error is not None:
        return {"error": error}
    cfg = TrainConfig.build(config)
    dataset = read_data(cfg, str(training))
    # As training takes them: the first n_examples, each pair two examples for an unpaired
    # algorithm. An eval_split share is counted too: the count is an upper bound.
    count = min(len(dataset), cfg.n_examples or len(dataset))
    if data_kind(cfg.algorithms) == "unpaired" and isinstance(dataset, PreferenceDataset):
        count *= 2
    return {"error": None, "examples_per_epoch": count}


def report_file(path: Path, filename: str, max_problems: int) -> dict[str, Any]:
    """``{"report": ...}``: ``data.validate``'s report of one file (every problem up to
    ``max_problems`` with its record, line and field; counts; character lengths), the server's
    path replaced by the client's ``filename`` wherever it appears."""
    from preftune.data.validate import validate

    try:
        report, _ = validate(path, max_problems=max_problems)
    except PreftuneError as e:  # unreadable as any format: the report is that one problem
        message = "\n".join([e.message, *e.details, *(f"hint: {h}" for h in e.hints)])
        return {"report": _hide({"source": filename, "format": None, "records": 0, "pairs": 0,
                                 "valid": False, "problem_count": 1, "warnings": [],
                                 "problems": [{"message": message, "file": filename,
                                               "text": f"{filename}: {message}"}]},
                                path, filename)}
    return {"report": _hide(report.to_dict(), path, filename)}


def estimate_plan(config: dict[str, Any], training: Path, validation: Path | None,
                  run_dir: Path) -> dict[str, Any]:
    """``{"plan": ...}``: the dry run of a job's config on its files (``engine.dryrun``:
    data, steps, model shape, memory estimate), or ``{"error": ...}`` as file validation
    words it, plus ``examples_per_epoch`` for the server's plan limits."""
    from preftune.config import TrainConfig
    from preftune.engine.dryrun import dry_run
    from preftune.errors import DataError, UsageError
    from preftune.service.jobspec import train_values

    error = check_files(config, training, validation)
    if error.get("error") is not None:
        return error
    cfg = TrainConfig.build(train_values(config, training, validation, run_dir))
    try:
        plan = dry_run(cfg)
    except PreftuneError as e:
        code = "invalid_training_file" if isinstance(e, DataError | UsageError) else "dry_run_error"
        lines = [e.message, *e.details, *(f"hint: {h}" for h in e.hints)]
        return {"error": {"code": code, "message": "\n".join(lines), "param": None}}
    return {"error": None, "plan": plan, "examples_per_epoch": error["examples_per_epoch"]}


def _hide(value: Any, path: Path, name: str) -> Any:
    """``value`` with every mention of the server's ``path`` replaced by ``name``."""
    if isinstance(value, str):  # messages name a file by its path, or by its base name
        return value.replace(str(path), name).replace(path.name, name)
    if isinstance(value, dict):
        return {k: _hide(v, path, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v, path, name) for v in value]
    return value


# Children one API process runs at once for requests (reports, estimates): each may use
# validation_memory_mb, so many requests at once must not start one each.
API_CHILDREN = 2
API_WAIT_S = 30.0
_api_children = threading.BoundedSemaphore(API_CHILDREN)


class Busy(PreftuneError):
    """Every child the API may run for requests is taken; the caller retries later."""


def run_task(request: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Run a ``report`` or ``estimate`` request in the validation child, under the memory
    and time limits of file validation, for an API request waiting on it: the child's
    result, or ``{"error": ...}`` for a child over a limit or failed. At most
    ``API_CHILDREN`` run at once; a request that waited ``API_WAIT_S`` for one gets ``Busy``.
    """
    if not _api_children.acquire(timeout=API_WAIT_S):
        raise Busy(f"the server is reading {API_CHILDREN} other files for reports and "
                   "estimates right now", ["retry in a minute"])
    try:
        request = {"validation": None, **request, "memory_mb": limits.validation_memory_mb}
        result = run_child(request, limits, lambda: True, limits.validation_timeout_s)
    finally:
        _api_children.release()
    assert result is not None  # the lease is never lost: there is none
    return result
