"""``preftune jobs`` and ``preftune files``: the job service's API from the command line.

Every command talks to the server PREFTUNE_SERVER (or ``--server``) with the key
PREFTUNE_API_KEY (or ``--api-key``). ``jobs wait`` follows a job until it ends and exits with
its outcome: 0 succeeded; a failed job by its error code (3 invalid data, 4 model missing,
5 out of memory, 2 invalid config, else 1); 1 cancelled or still running at ``--timeout``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from preftune import settings
from preftune.cli.common import err, out
from preftune.config import parse_overrides
from preftune.errors import (
    ConfigError,
    DataError,
    MissingError,
    OutOfMemoryError,
    PreftuneError,
    TrainingError,
    UsageError,
)
from preftune.service.client import ServiceClient, event_number, split_message

jobs_app = typer.Typer(help="Fine-tuning jobs on a preftune server: create, follow, control.",
                       no_args_is_help=True)
files_app = typer.Typer(help="Data files on a preftune server: upload, list, fetch, delete.",
                        no_args_is_help=True)

TERMINAL = ("succeeded", "failed", "cancelled")
# A failed job's error.code -> the error (and so the exit code) `jobs wait` ends with.
FAILURES: dict[str, type[PreftuneError]] = {
    "invalid_training_file": DataError,
    "invalid_validation_file": DataError,
    "out_of_memory": OutOfMemoryError,
    "model_not_found": MissingError,
    "invalid_config": ConfigError,
}

Server = Annotated[str | None, typer.Option(
    "--server", metavar="URL",
    help="The preftune server (default: PREFTUNE_SERVER, else http://127.0.0.1:8000).")]
ApiKey = Annotated[str | None, typer.Option(
    "--api-key", metavar="KEY", help="API key (default: PREFTUNE_API_KEY).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the server's JSON.")]
JobId = Annotated[str, typer.Argument(metavar="JOB_ID", help="A job id (ftjob-...).")]
FileId = Annotated[str, typer.Argument(metavar="FILE_ID", help="A file id (file-...).")]
Poll = Annotated[float, typer.Option(min=0.05, help="Seconds between polls of the server.")]
Timeout = Annotated[float | None, typer.Option(
    min=0, help="Give up (exit 1) after this many seconds; the job goes on.")]


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(files_app, name="files")


def connect(server: str | None, api_key: str | None) -> ServiceClient:
    """A client for the server and key given, else those the settings name."""
    return ServiceClient(server or settings.server_url(), api_key or settings.api_key())


# ------------------------------------------------------------------------------------ files


@files_app.command("upload")
def files_upload(
    path: Annotated[Path, typer.Argument(help="Preference data: JSONL, JSON, parquet or CSV.")],
    purpose: Annotated[str, typer.Option(help="What the file is for.")] = "fine-tune",
    server: Server = None, api_key: ApiKey = None, as_json: AsJson = False,
) -> None:
    """Upload a data file; prints its id (for jobs create --training-file)."""
    with connect(server, api_key) as client:
        uploaded = client.upload_file(path, purpose)
    if as_json:
        _print_json(uploaded)
        return
    out.print(uploaded["id"])
    out.print(f"{uploaded['bytes']:,} bytes, {escape(uploaded['filename'])}")


@files_app.command("list")
def files_list(server: Server = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """The files this key's tenant uploaded (and the result files of its jobs)."""
    with connect(server, api_key) as client:
        listing = client.list_files()
    if as_json:
        _print_json(listing)
        return
    if not listing["data"]:
        out.print("no files yet; upload one with: preftune files upload PATH")
        return
    table = Table(box=None, pad_edge=False)
    for name in ("id", "bytes", "filename", "purpose", "created"):
        table.add_column(name, justify="right" if name == "bytes" else "left",
                         no_wrap=name == "id")
    for f in listing["data"]:
        table.add_row(f["id"], f"{f['bytes']:,}", escape(f["filename"]), f["purpose"],
                      _time(f.get("created_at")))
    _print_table(table)


@files_app.command("get")
def files_get(file_id: FileId, server: Server = None, api_key: ApiKey = None,
              as_json: AsJson = False) -> None:
    """One file's details."""
    with connect(server, api_key) as client:
        found = client.get_file(file_id)
    if as_json:
        _print_json(found)
        return
    _print_fields({"id": found["id"], "filename": found["filename"],
                   "bytes": f"{found['bytes']:,}", "purpose": found["purpose"],
                   "status": found.get("status"), "created": _time(found.get("created_at"))})


@files_app.command("delete")
def files_delete(file_id: FileId, server: Server = None, api_key: ApiKey = None,
                 as_json: AsJson = False) -> None:
    """Delete a file (the server refuses while an unfinished job reads it)."""
    with connect(server, api_key) as client:
        deleted = client.delete_file(file_id)
    if as_json:
        _print_json(deleted)
    elif deleted.get("deleted"):
        out.print(f"deleted {deleted['id']}")
    else:
        raise UsageError(f"the server did not delete {file_id}")


@files_app.command("content")
def files_content(
    file_id: FileId,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to this file (default: standard output).")] = None,
    server: Server = None, api_key: ApiKey = None,
) -> None:
    """A file's bytes, e.g. a job's metrics.jsonl result file."""
    from preftune.fsutil import atomic_path

    with connect(server, api_key) as client:
        content = client.file_content(file_id)
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
        return
    with atomic_path(output) as tmp:
        tmp.write_bytes(content)
    err.print(f"wrote {len(content):,} bytes to {escape(str(output))}")


# ------------------------------------------------------------------------------------- jobs


@jobs_app.command("create", context_settings={"allow_interspersed_args": True})
def jobs_create(
    overrides: Annotated[list[str] | None, typer.Argument(
        metavar="KEY=VALUE", help="Any TrainConfig option, sent as the job's config.")]
    = None,
    model: Annotated[str, typer.Option(help="tiny, an alias or a hub id org/name.")] = "",
    training_file: Annotated[str | None, typer.Option(
        help="An uploaded file's id.")] = None,
    dataset: Annotated[Path | None, typer.Option(
        help="A local data file: uploaded first, then used as the training file.")] = None,
    validation_file: Annotated[str | None, typer.Option(
        help="An uploaded file's id to evaluate on.")] = None,
    eval_dataset: Annotated[Path | None, typer.Option(
        help="A local data file to upload and evaluate on.")] = None,
    method: Annotated[str, typer.Option(
        help="dpo, ipo, cdpo, robust, hinge, simpo, orpo, sft (supervised), or reinforcement "
        "(with --grader).")] = "dpo",
    grader: Annotated[Path | None, typer.Option(
        help="reinforcement: a JSON or YAML file holding the grader (an OpenAI grader "
        "object; preftune graders validate checks one).")] = None,
    eval_interval: Annotated[int | None, typer.Option(
        min=1, help="reinforcement: evaluate on the validation file every N steps.")] = None,
    eval_samples: Annotated[int | None, typer.Option(
        min=1, help="reinforcement: answers sampled per validation item.")] = None,
    compute_multiplier: Annotated[float | None, typer.Option(
        help="reinforcement: times the answers sampled per item (4 at 1.0).")] = None,
    beta: Annotated[float | None, typer.Option(help="Preference strength.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Pairs per step.")] = None,
    n_epochs: Annotated[int | None, typer.Option(min=1, help="Passes over the data.")] = None,
    learning_rate_multiplier: Annotated[float | None, typer.Option(
        help="Times the learning rate the method would use.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    suffix: Annotated[str | None, typer.Option(
        help="Part of the fine-tuned model's name.")] = None,
    metadata: Annotated[list[str] | None, typer.Option(
        metavar="KEY=VALUE", help="A label to find the job by (repeatable).")] = None,
    priority: Annotated[int | None, typer.Option(
        min=-100, max=100, help="Among your organization's queued jobs, higher runs first "
        "(default 0).")] = None,
    wandb_project: Annotated[str | None, typer.Option(
        help="Send the metrics to this Weights & Biases project (with the credentials the "
        "server's operator set for your organization).")] = None,
    wandb_name: Annotated[str | None, typer.Option(help="The W&B run's name.")] = None,
    wandb_entity: Annotated[str | None, typer.Option(help="The W&B entity (team).")] = None,
    wandb_tag: Annotated[list[str] | None, typer.Option(
        help="A W&B tag (repeatable).")] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        help="Sending the same request with the same key again returns the first job "
        "instead of a new one.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends, as jobs wait.")]
    = False,
    poll: Poll = 2.0, timeout: Timeout = None,
    server: Server = None, api_key: ApiKey = None, as_json: AsJson = False,
) -> None:
    """Create a fine-tuning job; prints its id and status."""
    if not model:
        raise UsageError("no model to fine-tune", ["pass --model, e.g. --model tiny"])
    if (training_file is None) == (dataset is None):
        raise UsageError("name the training data once: --training-file ID or --dataset PATH",
                         ["--dataset uploads a local file; --training-file names an "
                          "uploaded one (preftune files list)"])
    if validation_file is not None and eval_dataset is not None:
        raise UsageError("name the validation data once: --validation-file ID or "
                         "--eval-dataset PATH")
    if wait and as_json:
        raise UsageError("--json and --wait do not go together: the events would mix with "
                         "the JSON", ["create with --json, then: preftune jobs wait ID"])
    if wandb_project is None and (wandb_name or wandb_entity or wandb_tag):
        raise UsageError("--wandb-name, --wandb-entity and --wandb-tag need --wandb-project")
    hyper = {"beta": beta, "batch_size": batch_size, "n_epochs": n_epochs,
             "learning_rate_multiplier": learning_rate_multiplier,
             "eval_interval": eval_interval, "eval_samples": eval_samples,
             "compute_multiplier": compute_multiplier}
    hyper = {k: v for k, v in hyper.items() if v is not None}
    if method == "reinforcement":
        if grader is None:
            raise UsageError("a reinforcement job needs a grader",
                             ["pass --grader grader.json (check it first: preftune graders "
                              "validate grader.json)"])
        if beta is not None:
            raise UsageError("--beta is a preference method's; a reinforcement job's KL "
                             "weight is kl_coef=...")
        config = _plain_overrides(overrides or [])
        settings_: dict[str, Any] = {"grader": read_grader(grader)}
        if hyper:
            settings_["hyperparameters"] = hyper
        method_body: dict[str, Any] = {"type": method, method: settings_}
    else:
        rl_only = [flag for flag, value in (("--grader", grader), ("--eval-interval",
                   eval_interval), ("--eval-samples", eval_samples),
                   ("--compute-multiplier", compute_multiplier)) if value is not None]
        if rl_only:
            raise UsageError(f"{', '.join(rl_only)} belong to --method reinforcement")
        config = parse_overrides(overrides or [])
        method_body = {"type": method, **({method: {"hyperparameters": hyper}} if hyper else {})}
    request: dict[str, Any] = {
        "model": model,
        "method": method_body,
        "seed": seed, "suffix": suffix, "metadata": _pairs(metadata or [], "--metadata") or None,
        "config": config or None, "priority": priority,
        "integrations": [{"type": "wandb", "wandb": {
            "project": wandb_project, "name": wandb_name, "entity": wandb_entity,
            "tags": wandb_tag or None}}] if wandb_project else None,
    }
    note = err.print if as_json else out.print
    with connect(server, api_key) as client:
        uploaded: list[str] = []
        try:
            request["training_file"] = training_file or _upload(client, dataset, note, uploaded)
            request["validation_file"] = (validation_file
                                          or _upload(client, eval_dataset, note, uploaded))
            job = client.create_job({k: v for k, v in request.items() if v is not None},
                                    idempotency_key)
        except PreftuneError:
            for file_id in uploaded:  # no job reads them: do not leave them behind
                with contextlib.suppress(PreftuneError):  # the first error is the one to show
                    client.delete_file(file_id)
            raise
        if as_json:
            _print_json(job)
        else:
            out.print(job["id"])
            out.print(f"status: {job['status']}")
        if wait:
            _end_with(follow(client, job["id"], poll, timeout))
        elif not as_json:
            out.print(f"[dim]follow it with: preftune jobs wait {job['id']}[/]")


@jobs_app.command("list")
def jobs_list(
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many jobs.")] = None,
    after: Annotated[str | None, typer.Option(
        help="Continue after this job id (the last one of the previous page).")] = None,
    metadata: Annotated[list[str] | None, typer.Option(
        metavar="KEY=VALUE", help="Only jobs with this metadata (repeatable).")] = None,
    server: Server = None, api_key: ApiKey = None, as_json: AsJson = False,
) -> None:
    """This tenant's jobs, newest first."""
    with connect(server, api_key) as client:
        listing = client.list_jobs(after, limit, _pairs(metadata or [], "--metadata"))
    if as_json:
        _print_json(listing)
        return
    if not listing["data"]:
        out.print("no jobs" + (" match" if metadata or after else " yet"))
        return
    table = Table(box=None, pad_edge=False)
    for name in ("id", "status", "model", "created", "finished", "fine_tuned_model"):
        table.add_column(name, no_wrap=name == "id")
    for job in listing["data"]:
        table.add_row(job["id"], _status(job["status"]), escape(job["model"]),
                      _time(job.get("created_at")), _time(job.get("finished_at")),
                      escape(job.get("fine_tuned_model") or "-"))
    _print_table(table)
    if listing.get("has_more"):
        out.print(f"[dim]more: preftune jobs list --after {listing['data'][-1]['id']}[/]")


@jobs_app.command("get")
def jobs_get(job_id: JobId, server: Server = None, api_key: ApiKey = None,
             as_json: AsJson = False) -> None:
    """One job: status, model, method and hyperparameters, files, outcome."""
    with connect(server, api_key) as client:
        job = client.get_job(job_id)
    if as_json:
        _print_json(job)
        return
    method = job.get("method") or {}
    kind = method.get("type", "?")
    hyper = ((method.get(kind) or {}).get("hyperparameters") or job.get("hyperparameters")
             or {})
    error = job.get("error") or {}
    _print_fields({
        "id": job["id"], "status": job["status"], "model": job["model"],
        "fine-tuned model": job.get("fine_tuned_model"),
        "method": f"{kind} (" + ", ".join(f"{k} {v}" for k, v in sorted(hyper.items())) + ")",
        "training file": job.get("training_file"),
        "validation file": job.get("validation_file"),
        "created": _time(job.get("created_at")), "finished": _time(job.get("finished_at")),
        "attempt": job.get("attempt"), "trained tokens": job.get("trained_tokens"),
        "seed": job.get("seed"), "priority": job.get("priority"),
        "integrations": ", ".join(f"{i.get('type')} {(i.get(i.get('type')) or {}).get('project')}"
                                  for i in job.get("integrations") or []),
        "metadata": ", ".join(f"{k}={v}" for k, v in (job.get("metadata") or {}).items()),
        "result files": ", ".join(job.get("result_files") or []),
        "error": f"{error.get('code')}: {error.get('message')}" if error else None,
    })


@jobs_app.command("cancel")
def jobs_cancel(job_id: JobId, server: Server = None, api_key: ApiKey = None,
                as_json: AsJson = False) -> None:
    """Cancel a job; a running one stops at once (its worker ends the training process)."""
    with connect(server, api_key) as client:
        _print_change(client.cancel_job(job_id), as_json, "cancelled", "stops shortly")


@jobs_app.command("delete")
def jobs_delete(job_id: JobId, server: Server = None, api_key: ApiKey = None,
                as_json: AsJson = False) -> None:
    """Delete an ended job: its events, checkpoints, result files and model (download the
    model first if you want it). An unfinished job must be cancelled first."""
    with connect(server, api_key) as client:
        deleted = client.delete_job(job_id)
    if as_json:
        _print_json(deleted)
    elif deleted.get("deleted"):
        out.print(f"deleted {deleted['id']}")
    else:
        raise UsageError(f"the server did not delete {job_id}")


@jobs_app.command("pause")
def jobs_pause(job_id: JobId, server: Server = None, api_key: ApiKey = None,
               as_json: AsJson = False) -> None:
    """Pause a job; a running one saves a checkpoint first. `jobs resume` continues it."""
    with connect(server, api_key) as client:
        _print_change(client.pause_job(job_id), as_json, "paused",
                      "pauses after saving a checkpoint")


@jobs_app.command("resume")
def jobs_resume(job_id: JobId, server: Server = None, api_key: ApiKey = None,
                as_json: AsJson = False) -> None:
    """Queue a paused job again; it continues from its last checkpoint."""
    with connect(server, api_key) as client:
        _print_change(client.resume_job(job_id), as_json, "queued", "goes on running")


@jobs_app.command("events")
def jobs_events(
    job_id: JobId,
    limit: Annotated[int, typer.Option(min=1, help="The newest N events.")] = 20,
    server: Server = None, api_key: ApiKey = None, as_json: AsJson = False,
) -> None:
    """A job's newest events (messages and training metrics), oldest first."""
    with connect(server, api_key) as client:
        listing = client.list_events(job_id, limit=limit)
    if as_json:
        _print_json(listing)
        return
    for event in reversed(listing["data"]):
        _print_event(event)
    if listing.get("has_more"):
        out.print(f"[dim]older events: preftune jobs events {job_id} --limit {limit * 5}[/]")


@jobs_app.command("checkpoints")
def jobs_checkpoints(
    job_id: JobId,
    limit: Annotated[int, typer.Option(min=1, help="The newest N checkpoints.")] = 10,
    server: Server = None, api_key: ApiKey = None, as_json: AsJson = False,
) -> None:
    """A job's saved checkpoints, newest first, with their training metrics."""
    with connect(server, api_key) as client:
        listing = client.list_checkpoints(job_id, limit=limit)
    if as_json:
        _print_json(listing)
        return
    if not listing["data"]:
        out.print(f"no checkpoints of {job_id} yet")
        return
    table = Table(box=None, pad_edge=False)
    for name in ("step", "checkpoint", "train loss", "valid loss", "created"):
        table.add_column(name, justify="right" if "loss" in name or name == "step" else "left")
    for row in listing["data"]:
        metrics = row.get("metrics") or {}
        table.add_row(str(row["step_number"]), escape(row["fine_tuned_model_checkpoint"]),
                      _number(metrics.get("train_loss")), _number(metrics.get("valid_loss")),
                      _time(row.get("created_at")))
    _print_table(table)
    if listing.get("has_more"):
        out.print(f"[dim]older checkpoints: preftune jobs checkpoints {job_id} "
                  f"--limit {limit * 5}[/]")


@jobs_app.command("download")
def jobs_download(
    job_id: JobId,
    output: Annotated[Path, typer.Option("--output", "-o",
                                         help="Directory to unpack the model into.")],
    checkpoint: Annotated[str | None, typer.Option(
        help="A checkpoint id (ftckpt-..., from `jobs checkpoints`) instead of the final "
        "model.")] = None,
    server: Server = None, api_key: ApiKey = None,
) -> None:
    """Download a succeeded job's model (or a checkpoint's): loadable with from_pretrained
    (a LoRA adapter with peft), or by `preftune generate` / `merge`."""
    with connect(server, api_key) as client:
        model = client.download(job_id, output, checkpoint)
    out.print(f"model: {escape(str(model))}")


@jobs_app.command("wait")
def jobs_wait(job_id: JobId, poll: Poll = 2.0, timeout: Timeout = None,
              server: Server = None, api_key: ApiKey = None) -> None:
    """Follow a job live until it ends; exit with its outcome (0 when it succeeded)."""
    with connect(server, api_key) as client:
        _end_with(follow(client, job_id, poll, timeout))


# ------------------------------------------------------------------------- following a job


def follow(client: ServiceClient, job_id: str, poll_s: float,
           timeout_s: float | None) -> dict[str, Any]:
    """Print the job's new events, oldest first, and its steps until it ends; the final job.

    The job is read before its events, so when it is seen ended every event it wrote
    before ending has been printed too.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    seen = 0
    with StepDisplay() as display:
        try:
            while True:
                job = client.get_job(job_id)
                shown_as_error = (job.get("error") or {}).get("message")
                for event in client.events_since(job_id, seen):
                    seen = event_number(event["id"])
                    if event.get("type") == "metrics":
                        display.metrics(event.get("data") or {}, job)
                    elif event["message"] != shown_as_error:
                        display.message(event)
                if job["status"] in TERMINAL:
                    return job
                if deadline is not None and time.monotonic() >= deadline:
                    raise PreftuneError(
                        f"job {job_id} is still {job['status']} after {timeout_s:g} s", [
                            f"it goes on; follow it again with: preftune jobs wait {job_id}",
                            f"or stop it with: preftune jobs cancel {job_id}"])
                time.sleep(poll_s)
        except KeyboardInterrupt:
            err.print(f"stopped following {job_id}; it goes on on the server "
                      f"(preftune jobs cancel {job_id} stops it)")
            raise


def _end_with(job: dict[str, Any]) -> None:
    error = outcome_error(job)
    if error is not None:
        raise error
    out.print(f"[green]succeeded:[/] {job['id']} -> fine-tuned model "
              f"{escape(job.get('fine_tuned_model') or '?')}")


def outcome_error(job: dict[str, Any]) -> PreftuneError | None:
    """None for a job that succeeded; else the error its outcome exits with: a failed job's
    by its error code (``FAILURES``), a cancelled one's ``TrainingError``."""
    if job["status"] == "succeeded":
        return None
    events_hint = f"all its events: preftune jobs events {job['id']} --limit 100"
    if job["status"] == "cancelled":
        return TrainingError(f"job {job['id']} was cancelled before it finished",
                             [events_hint])
    error = job.get("error") or {}
    message, details, hints = split_message(str(error.get("message") or
                                                f"job {job['id']} {job['status']}"))
    kind = FAILURES.get(str(error.get("code")), TrainingError)
    return kind(message, hints + [events_hint], details)


class StepDisplay:
    """Training steps as a progress bar on a terminal, else one line per logged step."""

    def __init__(self) -> None:
        self.live = out.is_terminal
        self.progress = Progress(
            TextColumn("step"), MofNCompleteColumn(), BarColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
            console=out, disable=not self.live, transient=True)
        self.task: Any = None

    def __enter__(self) -> StepDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.progress.stop()

    def message(self, event: dict[str, Any]) -> None:
        _print_event(event)

    def metrics(self, row: dict[str, Any], job: dict[str, Any]) -> None:
        step = int(row.get("step", 0))
        if "eval/mean_reward" in row:
            out.print(f"eval at step {step}: reward {_number(row.get('eval/mean_reward'))} "
                      f"({int(row.get('eval/completions', 0))} answers)")
            return
        if "eval/loss" in row:
            out.print(f"eval at step {step}: loss {_number(row.get('eval/loss'))} "
                      f"acc {_number(row.get('eval/accuracy'), 2)}")
            return
        status = f"loss {_number(row.get('loss'))} acc {_number(row.get('accuracy'), 2)}"
        if "mean_reward" in row:
            status = f"reward {_number(row.get('mean_reward'))}" + (
                f" kl {_number(row['kl'])}" if "kl" in row else "")
        if not self.live:
            out.print(f"step {step}: {status}")
            return
        total = total_steps(row, job)
        if self.task is None:
            self.task = self.progress.add_task("train", total=total, completed=step,
                                               status=status)
            self.progress.start()
        else:
            self.progress.update(self.task, completed=step, total=total, status=status)


def total_steps(row: dict[str, Any], job: dict[str, Any]) -> int | None:
    """The run's step count, from how far into its epochs a metrics row is (rows say the
    epoch as a fraction, e.g. 0.25 after a quarter of the first), capped by max_steps."""
    config = job.get("config") or {}
    epochs = (job.get("hyperparameters") or {}).get("n_epochs") or config.get("epochs", 0)
    epoch, step = row.get("epoch", 0), row.get("step", 0)
    if not (_positive(epochs) and _positive(epoch) and _positive(step)):
        return None
    total = round(float(step) * float(epochs) / float(epoch))
    max_steps = config.get("max_steps")
    return min(total, max_steps) if isinstance(max_steps, int) and max_steps > 0 else total


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


# --------------------------------------------------------------------------------- printing


def _upload(client: ServiceClient, path: Path | None, note: Any,
            uploaded: list[str]) -> str | None:
    """Upload ``path`` if given; its file id, also appended to ``uploaded``."""
    if path is None:
        return None
    file = client.upload_file(path)
    uploaded.append(file["id"])
    note(f"uploaded {escape(str(path))} as {file['id']} ({file['bytes']:,} bytes)")
    return str(file["id"])


def read_grader(path: Path) -> Any:
    """A grader object from a JSON or YAML file (the server checks it)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read the grader file {path}: {e.strerror or e}") from None
    try:
        return yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as e:
        raise UsageError(f"{path} is neither JSON nor YAML: {e}") from None


def _plain_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` items with YAML-typed values (a reinforcement job's config: GRPO and
    sampling options, which the server checks)."""
    import yaml

    out_: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().removeprefix("--").replace("-", "_")
        if not sep or not key:
            raise UsageError(f"cannot read override {item!r}: expected key=value",
                             ["for example: kl_coef=0.05 max_tokens=64"])
        try:
            out_[key] = yaml.safe_load(raw.strip()) if raw.strip() else ""
        except yaml.YAMLError:
            out_[key] = raw.strip()
    return out_


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"cannot read {flag} {item!r}: expected key=value",
                             [f"for example: {flag} team=search"])
        pairs[key.strip()] = value
    return pairs


def _print_change(job: dict[str, Any], as_json: bool, done: str, pending: str) -> None:
    """The job after a cancel / pause / resume: done now, or asked of its worker."""
    if as_json:
        _print_json(job)
    elif job["status"] == "running":
        out.print(f"{job['id']}: running; asked its worker, it {pending}")
    else:
        out.print(f"{job['id']}: {_status(job['status'])}")


def _print_event(event: dict[str, Any]) -> None:
    level = event.get("level", "info")
    label = {"warn": "[yellow]warning:[/] ", "error": "[red]error:[/] "}.get(level, "")
    out.print(f"[dim]{_time(event.get('created_at'))}[/]  {label}"
              f"{escape(str(event.get('message', '')))}")


def _print_fields(fields: dict[str, Any]) -> None:
    """``name: value`` lines, skipping empty values."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in fields.items():
        if value not in (None, ""):
            grid.add_row(name, escape(str(value)))
    _print_table(grid)


def _print_table(table: Table) -> None:
    """On a terminal, fitted to its width; piped, a line per row however long (rich would
    fold and cut rows at 80 columns)."""
    if not out.is_terminal:
        text = io.StringIO()
        Console(file=text, highlight=False, width=1000).print(table)
        out.file.write("".join(line.rstrip() + "\n" for line in text.getvalue().splitlines()))
        return
    out.print(table)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _status(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow",
              "running": "cyan"}.get(status)
    return f"[{colour}]{status}[/]" if colour else status


def _time(timestamp: Any) -> str:
    if not isinstance(timestamp, int | float):
        return "-"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"
