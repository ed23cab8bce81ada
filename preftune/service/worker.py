"""Workers: validate queued files, claim jobs, run each as a child process group, track it.

A worker loops: reap jobs whose worker died, validate one job's files (``validation``), claim
one job and run it. Running a job means writing its ``train.yaml`` and starting ``preftune
train`` (or ``accelerate launch`` for several GPUs) in a new process group, with the job's run
directory as output and a clean environment (``settings.training_env``: the operator's
``pass_env``, the tenant's integration variables, nothing else of the server's): the first
attempt starts it, later attempts ``--resume`` it from its last durable checkpoint. While the
child runs, the worker renews its lease, mirrors ``metrics.jsonl`` into metrics events and
``checkpoints.jsonl`` into checkpoint rows, forwards warnings and errors, reaps other workers'
expired jobs, and acts on cancel and pause, and on the job's run-time budget: SIGTERM to the
group (training checkpoints and exits), SIGKILL after the grace period. Every one of those
writes is fenced by the attempt (``queue``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from preftune import settings
from preftune.errors import ExitCode
from preftune.fsutil import read_jsonl, write_text
from preftune.service import queue, rft
from preftune.service.db import Database, Job, Tenant
from preftune.service.jobspec import train_values
from preftune.service.limits import ServiceConfig
from preftune.service.queue import Lease, StaleAttempt
from preftune.service.rft import METHOD as RFT
from preftune.service.store import Store
from preftune.service.validation import validate_once

log = logging.getLogger(__name__)

# How a training process's exit code reads as a job error code.
ERROR_CODES = {
    ExitCode.USAGE: "invalid_config",
    ExitCode.INVALID_DATA: "invalid_training_file",
    ExitCode.MISSING: "model_not_found",
    ExitCode.OUT_OF_MEMORY: "out_of_memory",
}
_FORWARDED = {"warning:": "warn", "error:": "error"}
# rl launch prefixes each line with its process's name: "[trainer] error: ...".
_PROCESS_PREFIX = re.compile(r"\[(api|inference|trainer|env) *\] ")
RL_EVAL = rft.EVAL_LOG  # a reinforcement job's eval rewards, by its environment


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class Reaper:
    """``queue.reap_expired`` at most every ``every_s`` seconds: a busy loop's share of
    putting a dead worker's job back in the queue, so that it is not left to idle workers."""

    def __init__(self, db: Database, every_s: float) -> None:
        self.db, self.every_s = db, every_s
        self.next_at = 0.0

    def __call__(self) -> None:
        t = time.monotonic()
        if t >= self.next_at:
            queue.reap_expired(self.db)
            self.next_at = t + self.every_s


class Validator:
    """A loop that validates files and reaps expired leases: the API server runs one even
    without workers, so that jobs of dead workers are requeued by ``serve --workers 0`` too.
    It starts by removing what killed processes left in the store
    (``Store.clean_temporaries``)."""

    def __init__(self, db: Database, store: Store, *, worker_id: str | None = None,
                 lease_s: float = 30.0, poll_s: float = 0.5,
                 config: ServiceConfig | None = None) -> None:
        self.db, self.store = db, store
        self.worker_id = worker_id or new_worker_id() + "-validator"
        self.lease_s, self.poll_s = lease_s, poll_s
        self.config = config or ServiceConfig()

    def run(self, stop: threading.Event) -> None:
        _clean(self.db, self.store)
        reap = Reaper(self.db, self.lease_s / 2)  # also while a long validation runs
        while not stop.is_set():
            queue.reap_expired(self.db)
            if not validate_once(self.db, self.store, self.worker_id, self.lease_s,
                                 self.config.limits, tick=reap):
                stop.wait(self.poll_s)


def _clean(db: Database, store: Store) -> None:
    """Finish or undo what processes of the service killed meanwhile left in the store."""
    for path in store.clean_temporaries(recorded=lambda name: queue.file_stored(db, name)):
        log.info("removed %s, left by a process that is gone", path)


@dataclass
class Attempt:
    """One run of a job's training process, and what has been mirrored from it so far."""

    lease: Lease
    run_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    started: float  # time.monotonic() at the start
    deadline: float | None = None  # when the job's run-time budget ends (monotonic)
    max_run_s: float | None = None  # the job's budget over all attempts, for the error
    sent_rows: dict[str, str] = field(default_factory=dict)
    log_offset: int = 0
    stopping: str | None = None  # cancel | pause | shutdown | max_run_time, once SIGTERM
    kill_at: float | None = None
    files_seen: tuple[tuple[int, int] | None, ...] = ()  # manifests' (size, mtime) last read


class JobRefused(Exception):
    """The job cannot start as it is (an integration no longer allowed, no run time left):
    it fails with ``error``."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


class Worker:
    """Claims jobs from the queue and runs them to an end (see the module docstring)."""

    def __init__(self, db: Database, store: Store, *, worker_id: str | None = None,
                 lease_s: float = 30.0, poll_s: float = 1.0, grace_s: float = 30.0,
                 gpus: int = 0, echo: Callable[[str], None] | None = None,
                 config: ServiceConfig | None = None) -> None:
        self.db, self.store = db, store
        self.worker_id = worker_id or new_worker_id()
        self.lease_s, self.poll_s, self.grace_s = lease_s, poll_s, grace_s
        self.gpus = gpus
        self.echo = echo
        self.config = config or ServiceConfig()
        self.reap = Reaper(db, lease_s / 2)

    def run(self, stop: threading.Event, max_jobs: int | None = None) -> None:
        """Work until ``stop`` is set (or ``max_jobs`` jobs were run)."""
        queue.register_worker(self.db, self.worker_id, socket.gethostname(), os.getpid())
        _clean(self.db, self.store)
        done = 0
        try:
            while not stop.is_set() and (max_jobs is None or done < max_jobs):
                queue.worker_alive(self.db, self.worker_id, None)
                queue.reap_expired(self.db)
                if validate_once(self.db, self.store, self.worker_id, self.lease_s,
                                 self.config.limits, tick=self.reap):
                    continue
                lease = queue.claim_run(self.db, self.worker_id, self.lease_s,
                                        self.config.max_running())
                if lease is None:
                    stop.wait(self.poll_s)
                    continue
                self.run_job(lease, stop)
                done += 1
        finally:
            queue.unregister_worker(self.db, self.worker_id)

    # ------------------------------------------------------------------------- one job

    def run_job(self, lease: Lease, stop: threading.Event) -> int | None:
        """Run the leased attempt to its end; the training process's exit code (None if it
        never started)."""
        try:
            attempt = self._start(lease)
        except StaleAttempt:
            return None
        except JobRefused as e:
            self._finish(lease, "failed", error=e.error, level="error")
            return None
        except OSError as e:  # the process could not start at all
            self._finish(lease, "failed", error={"code": "worker_error", "param": None,
                                                 "message": f"cannot start training: {e}"})
            return None
        try:
            code = self._follow(attempt, stop)
        except StaleAttempt:
            # Another worker owns the job now: this attempt's process must not go on writing.
            self._signal(attempt, signal.SIGKILL)
            attempt.process.wait()
            self._say(f"{lease.job_id}: lease lost; stopped attempt {lease.attempt}")
            return attempt.process.returncode
        except BaseException:
            # The worker cannot follow its job any more (the database went away, an
            # interrupt): the process must not outlive it, or it would run on unwatched while
            # the lease expires and the next attempt resumes in the same run directory.
            self._signal(attempt, signal.SIGKILL)
            attempt.process.wait()
            raise
        try:
            self._conclude(attempt, code)
        except StaleAttempt:
            self._say(f"{lease.job_id}: lease lost before the result was written")
        return code

    def _start(self, lease: Lease) -> Attempt:
        job = queue.get_job(self.db, None, lease.job_id)
        budget = None if job.max_run_s is None else job.max_run_s - (job.run_s or 0.0)
        if budget is not None and budget <= 0:
            raise JobRefused(max_run_error(job.max_run_s))
        extra = self._integration_env(job)
        job_dir, run_dir = self.store.job_dir(job.id), self.store.run_dir(job.id)
        (job_dir / "logs").mkdir(parents=True, exist_ok=True)
        training = self._file_path(job.tenant_id, job.training_file)
        validation = (self._file_path(job.tenant_id, job.validation_file)
                      if job.validation_file else None)
        resume = (run_dir / "config.json").exists()
        if job.config.get("method") == RFT:
            config_path = job_dir / "rft.yaml"
            write_text(config_path, yaml.safe_dump(rft.launch_config(
                job.config, training, validation, run_dir, self.config),
                sort_keys=True))
            train_args = ["rl", "launch", "--config", str(config_path), "--output-dir",
                          str(run_dir), *(["--resume"] if resume else []),
                          *(["--trainer-processes", str(self.gpus)] if self.gpus > 1 else [])]
            command = [sys.executable, "-m", "preftune", *train_args]
            graders = self.config.graders
            if graders.score_model_api_key:
                extra["PREFTUNE_SCORE_MODEL_API_KEY"] = graders.score_model_api_key
            if graders.embedding_api_key:
                extra["PREFTUNE_EMBEDDING_API_KEY"] = graders.embedding_api_key
        else:
            config_path = job_dir / "train.yaml"
            write_text(config_path, yaml.safe_dump(
                train_values(job.config, training, validation, run_dir), sort_keys=True))
            train_args = ["train", "--resume", str(run_dir)] if resume else \
                ["train", "--config", str(config_path)]
            command = self._launcher() + train_args
        log_path = job_dir / "logs" / f"attempt-{lease.attempt}.log"
        checkpoints = read_jsonl(run_dir / "checkpoints.jsonl") if resume else []
        if checkpoints:
            message = f"Resuming from checkpoint {checkpoints[-1]['name']}"
        elif resume:
            message = "Restarting: the previous attempt left no checkpoint"
        else:
            message = "Training process started"
        queue.add_event(self.db, job.id, message, lease=lease)
        env = settings.training_env(job_dir, self.config.pass_env,
                                    {**extra, "PREFTUNE_WORKER_PID": str(os.getpid())})
        with log_path.open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=job_dir, env=env,
                                       start_new_session=True)
        started = time.monotonic()
        self._say(f"{job.id}: attempt {lease.attempt}: {' '.join(train_args)} "
                  f"(pid {process.pid})")
        return Attempt(lease, run_dir, log_path, process, started,
                       None if budget is None else started + budget, job.max_run_s)

    def _integration_env(self, job: Job) -> dict[str, str]:
        """The variables of the job's integrations: the wandb options the config has no
        field for, then the tenant's credentials from the operator's config, which win.

        The API checked the integrations when the job was created; a quota changed since
        (the operator took one away) refuses the job here, before it runs."""
        with self.db.session() as session:
            tenant = session.get(Tenant, job.tenant_id)
            name = tenant.name if tenant is not None else ""
        quota = self.config.quota_for(name)
        env: dict[str, str] = {}
        for item in job.integrations or []:
            kind = str(item.get("type"))
            allowed = quota.integrations.get(kind)
            if allowed is None:
                raise JobRefused({
                    "code": "integration_not_allowed", "param": "integrations",
                    "message": f"integration {kind!r} is no longer enabled for your "
                               "organization on this server; create the job without it, or "
                               f"ask the operator to enable it (tenants.{name}.integrations."
                               f"{kind} or quota.integrations.{kind} in the service config)"})
            options = item.get(kind) or {}
            if kind == "wandb" and options.get("entity"):
                env["WANDB_ENTITY"] = str(options["entity"])
            if kind == "wandb" and options.get("tags"):
                env["WANDB_TAGS"] = ",".join(str(t) for t in options["tags"])
            env.update(allowed.env)
        return env

    def _launcher(self) -> list[str]:
        if self.gpus > 1:  # port 0: any free port, as several jobs may share a machine
            return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                    "--num_processes", str(self.gpus), "--num_machines", "1",
                    "--dynamo_backend", "no", "--main_process_port", "0", "-m", "preftune"]
        return [sys.executable, "-m", "preftune"]

    def _file_path(self, tenant_id: str, file_id: str) -> Path:
        return self.store.file_path(queue.file_row(self.db, tenant_id, file_id).storage_name)

    def _follow(self, attempt: Attempt, stop: threading.Event) -> int:
        """Heartbeat, mirror and relay requests until the process exits; its exit code."""
        beat_every = min(max(self.lease_s / 3, 0.2), 1.0)  # requests reach it within 1 s
        next_beat = 0.0
        while True:
            code = attempt.process.poll()
            t = time.monotonic()
            if t >= next_beat or code is not None:
                requested = queue.heartbeat(self.db, attempt.lease, self.lease_s)
                queue.worker_alive(self.db, self.worker_id, attempt.lease.job_id)
                next_beat = t + beat_every
                if code is None:
                    self._relay(attempt, requested, stop, t)
                self.reap()
            self._mirror(attempt)
            if code is not None:
                return code
            if attempt.kill_at is not None and t >= attempt.kill_at:
                self._signal(attempt, signal.SIGKILL)
                attempt.kill_at = None
            time.sleep(min(self.poll_s, 0.5))

    def _relay(self, attempt: Attempt, requested: str | None, stop: threading.Event,
               t: float) -> None:
        """Stop the process for the first reason that comes: a request, the end of the run-time
        budget, the worker's shutdown. A cancel that comes while it stops to pause (or for a
        shutdown) makes the stop a cancel: SIGTERM was sent already, the kill deadline stays."""
        if attempt.stopping is None:
            if requested in ("cancel", "pause"):
                self._stop(attempt, requested)
            elif attempt.deadline is not None and t >= attempt.deadline:
                self._stop(attempt, "max_run_time")
            elif stop.is_set():
                self._stop(attempt, "shutdown")
        elif requested == "cancel" and attempt.stopping in ("pause", "shutdown"):
            attempt.stopping = "cancel"
            self._say(f"{attempt.lease.job_id}: cancel: the training process is stopping "
                      "already; the job ends cancelled")

    def _stop(self, attempt: Attempt, why: str) -> None:
        attempt.stopping = why
        attempt.kill_at = time.monotonic() + self.grace_s
        self._signal(attempt, signal.SIGTERM)
        self._say(f"{attempt.lease.job_id}: {why}: SIGTERM sent to the training process")

    def _signal(self, attempt: Attempt, sig: int) -> None:
        try:
            os.killpg(attempt.process.pid, sig)
        except ProcessLookupError:
            pass

    def _mirror(self, attempt: Attempt) -> None:
        """Metrics rows become metrics events, checkpoint rows checkpoint rows, and the log's
        warnings and errors become events (all fenced by the lease)."""
        for line in self._new_log_lines(attempt):
            line = _unprefixed(line)
            for prefix, level in _FORWARDED.items():
                if line.startswith(prefix):
                    queue.add_event(self.db, attempt.lease.job_id,
                                    line[len(prefix):].strip(), level=level,
                                    lease=attempt.lease)
        seen = tuple(_stamp(attempt.run_dir / name)
                     for name in ("metrics.jsonl", "checkpoints.jsonl", RL_EVAL))
        if seen == attempt.files_seen:
            return  # nothing new since the last look: skip re-reading the manifests
        attempt.files_seen = seen
        rows = read_jsonl(attempt.run_dir / "metrics.jsonl")
        rows += read_jsonl(attempt.run_dir / RL_EVAL)  # a reinforcement job's eval rewards
        for row in rows:
            kind = "eval" if any(k.startswith("eval/") for k in row) else "train"
            key = f"metrics:{kind}:{int(row.get('step', 0))}"
            text = json.dumps(row, sort_keys=True)
            if attempt.sent_rows.get(key) != text:
                queue.add_event(self.db, attempt.lease.job_id, describe_metrics(row),
                                type="metrics", data=row, lease=attempt.lease,
                                dedupe_key=key)
                attempt.sent_rows[key] = text
        by_step = {int(r.get("step", 0)): r for r in rows if "loss" in r}
        evals = {int(r.get("step", 0)): r for r in rows if "eval/loss" in r}
        for row in read_jsonl(attempt.run_dir / "checkpoints.jsonl"):
            step = int(row["step"])
            key = f"checkpoint:{step}"
            if key in attempt.sent_rows:
                continue
            metrics = checkpoint_metrics(step, by_step.get(step), evals.get(step))
            if queue.record_checkpoint(self.db, attempt.lease, step, row["name"],
                                       row["model_path"], metrics):
                queue.add_event(self.db, attempt.lease.job_id,
                                f"Checkpoint {row['name']} saved at step {step}",
                                lease=attempt.lease)
            attempt.sent_rows[key] = "1"

    def _new_log_lines(self, attempt: Attempt) -> list[str]:
        try:
            with attempt.log_path.open("rb") as f:
                f.seek(attempt.log_offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for its end
        attempt.log_offset += end
        lines = chunk[:end].decode("utf-8", "replace").splitlines()
        for line in lines:
            self._say(f"{attempt.lease.job_id}: {line}")
        return lines

    def _conclude(self, attempt: Attempt, code: int) -> None:
        """Write the attempt's outcome: a final status, or paused / queued to go on later;
        the attempt's wall time counts against the job's run-time budget."""
        lease = attempt.lease
        ran_s = time.monotonic() - attempt.started
        if code == 0 and not (attempt.run_dir / "final").is_dir():
            code = ExitCode.TRAINING_FAILED  # exit 0 without a final model is no success
        if code == 0:  # it finished before a stop request reached it: that stands
            job = queue.get_job(self.db, None, lease.job_id)
            results = self._result_file(job.tenant_id, attempt.run_dir)
            self._finish(lease, "succeeded", message="The job has successfully completed",
                         ran_s=ran_s,
                         fine_tuned_model=f"ft:{job.model}:{job.suffix or 'preftune'}:{job.id}",
                         trained_tokens=trained_tokens(attempt.run_dir),
                         result_files=[results] if results else [])
        elif attempt.stopping == "cancel":
            self._finish(lease, "cancelled", message="Fine-tuning job cancelled", ran_s=ran_s)
        elif attempt.stopping == "pause":
            self._finish(lease, "paused", message="Fine-tuning job paused at "
                         + last_checkpoint_text(attempt.run_dir), ran_s=ran_s)
        elif attempt.stopping == "shutdown":
            self._finish(lease, "queued", message="The worker stopped; the job is queued "
                         "again to resume from " + last_checkpoint_text(attempt.run_dir),
                         ran_s=ran_s)
        elif attempt.stopping == "max_run_time":
            self._finish(lease, "failed", error=max_run_error(attempt.max_run_s),
                         level="error", ran_s=ran_s)
        else:
            self._finish(lease, "failed", error=failure(code, attempt.log_path),
                         level="error", ran_s=ran_s)

    def _finish(self, lease: Lease, status: str, *, error: dict[str, Any] | None = None,
                message: str | None = None, level: str = "info", ran_s: float = 0.0,
                **fields: Any) -> None:
        ended = queue.finish_attempt(self.db, lease, status, error=error,
                                     message=message or (error or {}).get("message"),
                                     level=level, ran_s=ran_s, **fields)
        self._say(f"{lease.job_id}: {ended or status}")

    def _result_file(self, tenant_id: str, run_dir: Path) -> str | None:
        """The run's metrics.jsonl, registered as a ``fine-tune-results`` file."""
        metrics = run_dir / "metrics.jsonl"
        if not metrics.exists():
            return None
        file_id = queue.new_id("file")
        with metrics.open("rb") as f, self.store.saving(
                file_id, iter(lambda: f.read(1 << 20), b""), "metrics.jsonl",
                limit=1 << 40) as (name, size):
            queue.add_file(self.db, file_id, tenant_id, "metrics.jsonl", "fine-tune-results",
                           size, name)
        return file_id

    def _say(self, line: str) -> None:
        if self.echo is not None:
            self.echo(line)


def _unprefixed(line: str) -> str:
    """A line of ``rl launch``'s log without its ``[process]`` prefix."""
    match = _PROCESS_PREFIX.match(line)
    return line[match.end():] if match else line


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


def describe_metrics(row: dict[str, Any]) -> str:
    step = int(row.get("step", 0))
    if "eval/mean_reward" in row:
        return (f"Step {step}: eval mean reward={row['eval/mean_reward']:.4f} "
                f"(std {row.get('eval/reward_std', float('nan')):.4f}, "
                f"{int(row.get('eval/completions', 0))} answers to "
                f"{int(row.get('eval/items', 0))} items)")
    if "mean_reward" in row:
        kl = f"kl={row['kl']:.4f}, " if "kl" in row else ""  # measured only with kl_coef > 0
        return (f"Step {step}: mean reward={row['mean_reward']:.4f}, "
                f"reward std={row.get('reward_std', float('nan')):.4f}, {kl}"
                f"clip fraction={row.get('clip_frac', float('nan')):.3f}")
    if "eval/loss" in row:
        return (f"Step {step}: eval loss={row['eval/loss']:.4f}, "
                f"eval accuracy={row.get('eval/accuracy', float('nan')):.2f}")
    return (f"Step {step}: training loss={row.get('loss', float('nan')):.4f}, "
            f"accuracy={row.get('accuracy', float('nan')):.2f}")


def checkpoint_metrics(step: int, train: dict[str, Any] | None,
                       evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """The OpenAI checkpoint metrics from the run's rows at that step (None where absent)."""
    return {"step": step,
            "train_loss": (train or {}).get("loss"),
            "train_mean_token_accuracy": (train or {}).get("accuracy"),
            "valid_loss": (evaluation or {}).get("eval/loss"),
            "valid_mean_token_accuracy": (evaluation or {}).get("eval/accuracy"),
            "full_valid_loss": (evaluation or {}).get("eval/loss"),
            "full_valid_mean_token_accuracy": (evaluation or {}).get("eval/accuracy")}


def max_run_error(max_run_s: float | None) -> dict[str, Any]:
    """The error of a job that used up its run time (``Job.max_run_s``, over all attempts)."""
    hours = (max_run_s or 0.0) / 3600
    return {"code": "max_run_time_exceeded", "param": None,
            "message": f"the job ran longer than max_run_hours={hours:g} "
                       "(limits.max_run_hours), over all its attempts; its checkpoints are "
                       "kept. Ask for fewer steps or epochs, or ask the operator to raise "
                       "limits.max_run_hours in the service config"}


def last_checkpoint_text(run_dir: Path) -> str:
    rows = read_jsonl(run_dir / "checkpoints.jsonl")
    return f"checkpoint {rows[-1]['name']}" if rows else "the start (no checkpoint yet)"


def trained_tokens(run_dir: Path) -> int | None:
    """Tokens the policy was trained on: the sum of the ``tokens`` of every training row."""
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "tokens" in r]
    return int(sum(r["tokens"] for r in rows)) if rows else None


def failure(code: int, log_path: Path) -> dict[str, Any]:
    """The job error for a training process that exited with ``code``: the error lines it
    printed (``error:``, the details under it and ``hint:``), or how it ended."""
    lines: list[str] = []
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        text = []
    text = [_unprefixed(line) for line in text]
    for i, line in enumerate(text):
        if line.startswith("error:"):
            lines = [line[len("error:"):].strip()]
            for follow in text[i + 1:]:
                if not (follow.startswith("  ") or follow.startswith("hint:")):
                    break
                lines.append(follow.strip())
    if not lines:
        how = (f"killed by signal {-code}" if code < 0 else f"exited with code {code}")
        tail = [t for t in text[-5:] if t.strip()]
        lines = [f"the training process {how}", *tail]
    codes: dict[int, str] = {int(k): v for k, v in ERROR_CODES.items()}
    return {"code": codes.get(code, "training_failed"), "message": "\n".join(lines),
            "param": "training_file" if code == ExitCode.INVALID_DATA else None}

