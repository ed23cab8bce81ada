"""``/v1/fine_tuning/jobs``: create, list, read, cancel, pause, resume and delete jobs; their
events, checkpoints and models. Shaped like OpenAI's fine-tuning API; ``config``,
``max_attempts`` and ``priority`` on create, ``pause`` / ``resume``, the ``paused`` status,
``DELETE`` and the model downloads are preftune's additions.
"""

from __future__ import annotations

import json
import pathlib
import re
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy import select

from preftune.rundir import METRICS
from preftune.service import queue, retention
from preftune.service.auth import Principal
from preftune.service.db import Database, Job
from preftune.service.deps import CurrentPrincipal, Service, ServiceDep, quota_exceeded
from preftune.service.jobspec import (
    InvalidRequest,
    JobSpec,
    build_spec,
    check_limits,
    check_model_allowed,
    check_model_name,
    check_target_modules,
    over_limit,
    refuse_tracker_options,
    request_hash,
    with_integrations,
)
from preftune.service.limits import ServiceConfig
from preftune.service.rft import EVAL_LOG
from preftune.service.rft import METHOD as RFT
from preftune.service.schemas import (
    ID_PATTERN,
    CheckpointList,
    CheckpointPublic,
    Estimate,
    EventList,
    EventPublic,
    JobCreate,
    JobDeleted,
    JobError,
    JobList,
    JobPublic,
    MetricsPage,
    Text,
    error_responses,
)
from preftune.service.store import Store
from preftune.service.validation import plan_error, run_task

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])

JobId = Annotated[str, Path(pattern=ID_PATTERN, description="A job id (ftjob-...).")]
_METADATA_PARAM = re.compile(r"metadata\[(.*)\]")
_SEED_MAX = 2**31 - 1  # the jobs table's seed column is a 32-bit integer
DEFAULT_ATTEMPTS = 3


@router.post("", response_model=JobPublic, responses=error_responses(400, 409, 429))
def create_job(
    body: JobCreate, principal: CurrentPrincipal, service: ServiceDep,
    idempotency_key: Annotated[Text | None, Header(
        alias="Idempotency-Key", max_length=200,
        description="Retrying with the same key and body returns the job the first request "
        "created; the same key with another body is a 409.")] = None,
) -> JobPublic:
    """Create a job in ``validating_files``; a validator checks its files next.

    Refused before anything is stored: a model the tenant's quota does not list, options over
    the server's limits, trackers outside ``integrations``, LoRA targets the model lacks (400
    naming the field), and a tenant at its ``max_queued_jobs`` (429).
    """
    limits = service.config.limits
    quota = service.config.quota_for(principal.tenant_name)
    spec, integrations = _checked(body, principal, service)
    seed = spec.config["seed"]
    try:
        job, _ = queue.enqueue(
            service.db, tenant_id=principal.tenant_id, model=body.model,
            training_file=body.training_file, validation_file=body.validation_file,
            method=spec.method, config=spec.config, seed=seed, suffix=body.suffix,
            metadata=body.metadata, idempotency_key=idempotency_key,
            request_hash=request_hash(body.model_dump(mode="json")), priority=body.priority,
            integrations=integrations or None, max_run_s=limits.max_run_hours * 3600,
            max_attempts=body.max_attempts or min(DEFAULT_ATTEMPTS, limits.max_attempts),
            max_waiting=quota.max_queued_jobs)
    except queue.QueueFull as full:
        raise quota_exceeded(
            f"your organization has {full.waiting} unfinished jobs that are not running "
            "(validating files, queued or paused); its quota is max_queued_jobs="
            f"{full.cap}", "max_queued_jobs",
            "wait for some of them to start or end, or cancel some") from None
    return JobPublic.from_row(job)


def _checked(body: JobCreate, principal: Principal, service: Service
             ) -> tuple[JobSpec, list[dict[str, Any]]]:
    """The job's spec and integrations, once every check create makes before storing
    anything has passed (each refusal a 400 naming the field)."""
    limits = service.config.limits
    quota = service.config.quota_for(principal.tenant_name)
    for param, file_id in (("training_file", body.training_file),
                           ("validation_file", body.validation_file)):
        if file_id is not None:
            _check_file(service.db, principal.tenant_id, file_id, param)
    if not body.model.startswith("ft:"):  # a tenant's own fine-tuned models are its own
        check_model_name(body.model)
        check_model_allowed(body.model, quota)
    spec, source = _spec(service.db, service.store, principal.tenant_id, body,
                         service.config)
    refuse_tracker_options(spec)
    check_limits(spec, limits)
    if body.max_attempts is not None and body.max_attempts > limits.max_attempts:
        raise over_limit("max_attempts", body.max_attempts, "max_attempts",
                         limits.max_attempts, "max_attempts")
    seed = spec.config["seed"]
    if not 0 <= seed <= _SEED_MAX:
        raise InvalidRequest(f"seed {seed} is out of range: expected 0 to {_SEED_MAX}",
                             spec.param("seed"))
    integrations = [i.model_dump(mode="json") for i in body.integrations or []]
    spec = with_integrations(spec, integrations, quota)
    check_target_modules(spec, body.model, source)
    return spec, integrations


@router.post("/estimate", response_model=Estimate, responses=error_responses(400, 503))
def estimate_job(body: JobCreate, principal: CurrentPrincipal,
                 service: ServiceDep) -> Estimate:
    """preftune extension: what creating this job would plan, without creating it: the
    dry run of its config on its files (data and truncation counts, optimizer steps, model
    parameters, a memory estimate) and whether it is within this server's plan limits.

    Answers the 400s create would for bad options. The files are read in a child process
    under the server's validation memory and time limits, as a job's files are; a file
    training would refuse is 400 naming it.
    """
    spec, _ = _checked(body, principal, service)
    if spec.config.get("method") == RFT:
        raise InvalidRequest("the dry-run estimate plans preference and supervised jobs; a "
                             "reinforcement job's cost is in its sampling, which a dry run "
                             "cannot count", "method.type",
                             ["create the job: its files are checked in validating_files, "
                              "and its steps against this server's limits"])
    limits = service.config.limits
    files: dict[str, tuple[str, str]] = {}  # training / validation: server path, name
    for key, file_id in (("training", body.training_file),
                         ("validation", body.validation_file)):
        if file_id is not None:
            row = queue.file_row(service.db, principal.tenant_id, file_id)
            files[key] = (str(service.store.file_path(row.storage_name)), row.filename)
    paths = {key: path for key, (path, _) in files.items()}
    names = dict(files.values())  # messages name a file by its path, or by its base name
    names.update({pathlib.Path(path).name: name for path, name in files.values()})
    result = run_task({"task": "estimate", "config": spec.config, **paths}, limits)
    error = result.get("error")
    if error is not None:
        raise InvalidRequest(_named(error["message"], names), error.get("param"),
                             code=error["code"])
    plan = _named(result["plan"], names)
    plan["model"]["source"] = body.model  # a server path for tiny and ft: models
    over = plan_error(spec.config, result["examples_per_epoch"], limits)
    return Estimate(plan=plan, examples_per_epoch=result["examples_per_epoch"],
                    within_limits=over is None, limit_error=JobError.model_validate(over)
                    if over else None)


def _named(value: Any, names: dict[str, str]) -> Any:
    """``value`` with the server's paths of the tenant's files replaced by their names."""
    if isinstance(value, str):
        for path, name in names.items():
            value = value.replace(path, name)
        return value
    if isinstance(value, dict):
        return {k: _named(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_named(v, names) for v in value]
    return value


def _check_file(db: Database, tenant_id: str, file_id: str, param: str) -> None:
    """A job reads only the caller's own fine-tune files (400 naming the field otherwise,
    as OpenAI answers)."""
    try:
        row = queue.file_row(db, tenant_id, file_id)
    except queue.NotFound:
        raise InvalidRequest(f"{param} {file_id!r}: no such file", param,
                             ["upload it with POST /v1/files and pass the id it returns"]
                             ) from None
    if row.purpose != "fine-tune":
        raise InvalidRequest(f"{param} {file_id!r} has purpose {row.purpose!r}, not "
                             "'fine-tune'", param, ["upload the data with purpose=fine-tune"])


def _spec(db: Database, store: Store, tenant_id: str, body: JobCreate,
          server: ServiceConfig) -> tuple[JobSpec, str]:
    """The job's training config, and where its model comes from on the server: a name, or
    for an ``ft:`` model the directory of that job's final weights, which it trains on from."""
    method = body.method.model_dump() if body.method is not None else None
    if body.hyperparameters is not None:
        if method is not None:
            raise InvalidRequest("hyperparameters are given twice: at the top level and in "
                                 "method", "hyperparameters",
                                 ["give them in method.<type>.hyperparameters only"])
        method = {"type": "dpo", "dpo": {"hyperparameters": body.hyperparameters}}
    if not body.model.startswith("ft:"):
        return build_spec(body.model, method, body.config, body.seed, server), body.model
    source = _tuned(db, tenant_id, body.model)
    spec = build_spec("tiny", method, body.config, body.seed, server)  # all but the model
    # A path the server made: the job row keeps the client's ft: name as its model.
    final = str(store.run_dir(source.id) / "final")
    return replace(spec, config={**spec.config, "model": final}), final


def _tuned(db: Database, tenant_id: str, model: str) -> Job:
    """The caller's succeeded job that produced the fine-tuned model ``model``."""
    with db.session() as session:
        job = session.scalars(select(Job).where(
            Job.tenant_id == tenant_id, Job.fine_tuned_model == model,
            Job.status == "succeeded")).first()
    if job is None:
        raise InvalidRequest(f"model {model!r} is not a fine-tuned model of yours", "model",
                             ["use the fine_tuned_model of one of your succeeded jobs"])
    return job


@router.get("", response_model=JobList, responses=error_responses(400, 404))
def list_jobs(
    request: Request, principal: CurrentPrincipal, service: ServiceDep,
    after: Annotated[str | None, Query(pattern=ID_PATTERN,
                                       description="The last job id of the page before.")
                     ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobList:
    """The caller's jobs, newest first. Filter on metadata with ``metadata[key]=value``
    query parameters (what the OpenAI SDK sends for ``metadata={"key": "value"}``)."""
    metadata: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name == "metadata":
            raise InvalidRequest(f"metadata={value!r} is not a filter preftune supports",
                                 "metadata", ["filter with metadata[key]=value"])
        found = _METADATA_PARAM.fullmatch(name)
        if found:
            metadata[found.group(1)] = value
    jobs, more = queue.list_jobs(service.db, principal.tenant_id, after, limit, metadata)
    return JobList(data=[JobPublic.from_row(j) for j in jobs], has_more=more)


@router.get("/{job_id}", response_model=JobPublic, responses=error_responses(404))
def get_job(job_id: JobId, principal: CurrentPrincipal, service: ServiceDep) -> JobPublic:
    return JobPublic.from_row(queue.get_job(service.db, principal.tenant_id, job_id))


@router.delete("/{job_id}", response_model=JobDeleted, responses=error_responses(404, 409))
def delete_job(job_id: JobId, principal: CurrentPrincipal, service: ServiceDep) -> JobDeleted:
    """Delete an ended job with its events, checkpoints, result files, run directory and
    model; 409 while it is unfinished (cancel it first) or another job trains on from it."""
    retention.delete_job(service.db, service.store, principal.tenant_id, job_id)
    return JobDeleted(id=job_id, deleted=True)


@router.post("/{job_id}/cancel", response_model=JobPublic,
             responses=error_responses(404, 409))
def cancel_job(job_id: JobId, principal: CurrentPrincipal, service: ServiceDep) -> JobPublic:
    """Cancel a job; a running one stops at its worker's next heartbeat."""
    return JobPublic.from_row(queue.request_cancel(service.db, principal.tenant_id, job_id))


@router.post("/{job_id}/pause", response_model=JobPublic, responses=error_responses(404, 409))
def pause_job(job_id: JobId, principal: CurrentPrincipal, service: ServiceDep) -> JobPublic:
    """Pause a queued job now, or a running one once it has saved a checkpoint."""
    return JobPublic.from_row(queue.request_pause(service.db, principal.tenant_id, job_id))


@router.post("/{job_id}/resume", response_model=JobPublic,
             responses=error_responses(404, 409))
def resume_job(job_id: JobId, principal: CurrentPrincipal, service: ServiceDep) -> JobPublic:
    """Queue a paused job again; it continues from its last checkpoint."""
    return JobPublic.from_row(queue.request_resume(service.db, principal.tenant_id, job_id))


@router.get("/{job_id}/events", response_model=EventList, responses=error_responses(404))
def list_events(
    job_id: JobId, principal: CurrentPrincipal, service: ServiceDep,
    after: Annotated[str | None, Query(pattern=ID_PATTERN,
                                       description="The last event id of the page before.")
                     ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> EventList:
    """The job's events, newest first; metrics events carry the metrics row as ``data``."""
    rows, more = queue.list_events(service.db, principal.tenant_id, job_id, after, limit)
    return EventList(data=[EventPublic.from_row(r) for r in rows], has_more=more)


@router.get("/{job_id}/checkpoints", response_model=CheckpointList,
            responses=error_responses(404))
def list_checkpoints(
    job_id: JobId, principal: CurrentPrincipal, service: ServiceDep,
    after: Annotated[str | None, Query(pattern=ID_PATTERN,
                                       description="The last checkpoint id of the page "
                                       "before.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> CheckpointList:
    """The job's durable checkpoints, highest step first."""
    job = queue.get_job(service.db, principal.tenant_id, job_id)
    rows, more = queue.list_checkpoints(service.db, principal.tenant_id, job_id, after, limit)
    return CheckpointList(data=[CheckpointPublic.from_row(r, job) for r in rows],
                          has_more=more)



@router.get("/{job_id}/metrics", response_model=MetricsPage, responses=error_responses(404))
def list_metrics(
    job_id: JobId, principal: CurrentPrincipal, service: ServiceDep,
    offset: Annotated[int, Query(ge=0, description="Rows already read: the next_offset of "
                                 "the page before (0: from the first row).")] = 0,
    eval_offset: Annotated[int, Query(ge=0, description="A reinforcement job's evaluation "
                                      "rows already read: the next_eval_offset of the page "
                                      "before.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 2000,
) -> MetricsPage:
    """preftune extension: the run's ``metrics.jsonl`` rows (training rows, and evaluation
    rows whose names start with ``eval/``) in the order written, from row ``offset`` on; then,
    for a reinforcement job, its eval reward rows (``eval/mean_reward``, ...) from row
    ``eval_offset`` on. A page polls with the ``next_offset`` and ``next_eval_offset`` it was
    given, so it reads each row once."""
    job = queue.get_job(service.db, principal.tenant_id, job_id)
    run_dir = service.store.run_dir(job.id)
    rows = _metrics_rows(run_dir / METRICS)
    page = rows[offset:offset + limit]
    evals = _metrics_rows(run_dir / EVAL_LOG) if job.config.get("method") == RFT else []
    eval_page = evals[eval_offset:eval_offset + limit - len(page)]
    return MetricsPage(data=page + eval_page, next_offset=offset + len(page),
                       next_eval_offset=eval_offset + len(eval_page),
                       has_more=offset + len(page) < len(rows)
                       or eval_offset + len(eval_page) < len(evals))


def _metrics_rows(path: pathlib.Path) -> list[dict[str, Any]]:
    """The file's complete rows (none before training logs its first): a line being
    written, not yet ended by its newline, is left for the next poll."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for line in text.split("\n")[:-1]:  # the part after the last newline is unfinished
        try:
            row = json.loads(line)
        except ValueError:  # a line torn by a crash: repair_jsonl drops it on resume
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


_ARCHIVE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/gzip": {}}, "description": "A .tar.gz of the model."}}


@router.get("/{job_id}/content", response_class=FileResponse,
            responses={**error_responses(404, 409), **_ARCHIVE})
def download_model(job_id: JobId, principal: CurrentPrincipal,
                   service: ServiceDep) -> FileResponse:
    """The fine-tuned model of a succeeded job (``final/``: weights or adapter, tokenizer)
    as a ``.tar.gz``."""
    job = queue.get_job(service.db, principal.tenant_id, job_id)
    if job.status != "succeeded":
        raise queue.Conflict(f"job {job_id} is {job.status}: its model exists once it has "
                             "succeeded", ["download a checkpoint meanwhile: GET "
                                           f"/v1/fine_tuning/jobs/{job_id}/checkpoints"])
    return _send(service.store, service.store.run_dir(job.id) / "final", f"{job.id}-final")


@router.get("/{job_id}/checkpoints/{checkpoint_id}/content", response_class=FileResponse,
            responses={**error_responses(404), **_ARCHIVE})
def download_checkpoint(
    job_id: JobId, principal: CurrentPrincipal, service: ServiceDep,
    checkpoint_id: Annotated[str, Path(pattern=ID_PATTERN,
                                       description="A checkpoint id (ftckpt-...).")],
) -> FileResponse:
    """A checkpoint's model (weights or adapter) as a ``.tar.gz``."""
    row = queue.get_checkpoint(service.db, principal.tenant_id, job_id, checkpoint_id)
    source = service.store.run_dir(job_id) / row.model_path
    if not source.is_dir():
        raise queue.NotFound(f"checkpoint {row.name} of job {job_id} is no longer on disk",
                             ["the job's save_total_limit keeps only its newest checkpoints"])
    return _send(service.store, source, f"{job_id}-{row.name}")


def _send(store: Store, source: pathlib.Path, name: str) -> FileResponse:
    """The model directory as a ``.tar.gz``: the store builds it once per (source, name) and
    keeps it for the next download, so it is not deleted after sending."""
    return FileResponse(store.archive(source, name), media_type="application/gzip",
                        filename=f"{name}.tar.gz")
