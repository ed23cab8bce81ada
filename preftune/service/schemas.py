"""What the HTTP API reads and writes: request and response bodies, per resource.

The shapes follow OpenAI's fine-tuning API (files, jobs, events, checkpoints, errors) so the
official SDK reads them; preftune's additions are marked as extensions. ``*Create`` models are
request bodies, ``*Public`` models are responses; ``from_row`` turns a table row into one.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from preftune.service.db import File, Job, JobCheckpoint, JobEvent
from preftune.service.queue import STATUSES, event_id

JobStatus = Literal["validating_files", "queued", "running", "paused", "succeeded", "failed",
                    "cancelled"]
assert set(get_args(JobStatus)) == set(STATUSES)  # one list of states: the queue's


def printable(value: str) -> str:
    """Refuse control characters: no id or name needs them (and PostgreSQL stores no NUL)."""
    if any(not c.isprintable() for c in value):
        raise ValueError("control characters are not allowed")
    return value


def no_nul(value: str) -> str:
    """Free text may hold anything PostgreSQL can store: all but NUL."""
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


Text = Annotated[str, AfterValidator(printable)]
FileRef = Annotated[str, Field(max_length=64), AfterValidator(printable)]
Suffix = Annotated[str, Field(max_length=64), AfterValidator(printable)]
MetadataKey = Annotated[str, Field(max_length=64), AfterValidator(printable)]
MetadataValue = Annotated[str, Field(max_length=512), AfterValidator(no_nul)]
# Every id the service hands out is a prefix, a dash and hex digits; event ids are numbered.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


# ------------------------------------------------------------------------------------ errors


class ErrorBody(BaseModel):
    message: str = Field(description="What went wrong and what to do about it.")
    type: str = Field(description="invalid_request_error, authentication_error, ...")
    param: str | None = Field(None, description="The request field at fault, if one is.")
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error the API answers with, whatever its status."""

    error: ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` declaring ``statuses`` (plus those any /v1 call can get)."""
    described = {400: "Invalid request", 401: "Missing or invalid API key",
                 404: "No such object (for this API key's organization)",
                 409: "The object's state does not allow this", 413: "Request body too large",
                 422: "Request does not match the schema",
                 429: "Rate limit exceeded, too many failed key checks, or over a quota",
                 503: "The server is busy reading other files: retry later"}
    every = sorted({401, 413, 422, 429, *statuses})
    return {status: {"model": ErrorResponse, "description": described[status]}
            for status in every}


# ------------------------------------------------------------------------------------- files


class FilePublic(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str = Field(description="The name the client uploaded it under (metadata only).")
    purpose: str
    status: Literal["processed"] = "processed"
    status_details: None = None
    expires_at: None = None

    @classmethod
    def from_row(cls, row: File) -> FilePublic:
        return cls(id=row.id, bytes=row.bytes, created_at=row.created_at,
                   filename=row.filename, purpose=row.purpose)


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FilePublic]
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


# -------------------------------------------------------------------------------------- jobs


class MethodCreate(BaseModel):
    """``{"type": "dpo", "dpo": {"hyperparameters": {...}}}``; the settings object is named
    by the type (dpo, ipo, cdpo, robust, hinge, simpo, orpo, sft, supervised)."""

    model_config = ConfigDict(extra="allow")

    type: Text = "dpo"


class WandbSettings(BaseModel):
    """Where a job's metrics go in Weights & Biases (OpenAI's ``wandb`` integration)."""

    model_config = ConfigDict(extra="forbid")

    project: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(printable)]
    name: Annotated[str, Field(max_length=128), AfterValidator(printable)] | None = None
    entity: Annotated[str, Field(max_length=128), AfterValidator(printable)] | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=64),
                         AfterValidator(printable)]] | None = Field(None, max_length=50)

    @field_validator("tags", mode="after")
    @classmethod
    def _no_commas(cls, tags: list[str] | None) -> list[str] | None:
        """Tags reach wandb as WANDB_TAGS, a comma-separated list."""
        if tags and any("," in tag for tag in tags):
            raise ValueError("a tag cannot contain a comma")
        return tags


class IntegrationCreate(BaseModel):
    """``{"type": "wandb", "wandb": {"project": ...}}``, as OpenAI's API takes it."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["wandb"]
    wandb: WandbSettings


PRIORITY_MIN, PRIORITY_MAX = -100, 100


class JobCreate(BaseModel):
    """A fine-tuning job request. ``config``, ``max_attempts`` and ``priority`` are preftune
    extensions."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=300), AfterValidator(printable)] = \
        Field(description="tiny, an alias, a hub id org/name, or the ft: name of one of your "
              "succeeded jobs.")
    training_file: FileRef
    validation_file: FileRef | None = None
    method: MethodCreate | None = None
    hyperparameters: dict[str, Any] | None = Field(
        None, description="Deprecated: the hyperparameters of a dpo method.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    suffix: Suffix | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = Field(None, max_length=16)
    integrations: list[IntegrationCreate] | None = Field(
        None, max_length=4, description="Trackers that get the job's metrics: wandb, with the "
        "credentials the server's operator set for your organization.")
    config: dict[str, Any] | None = Field(None, description="preftune extension: any "
                                          "TrainConfig option except data and output paths "
                                          "and trackers (see integrations).")
    max_attempts: int | None = Field(None, ge=1, description="preftune extension: attempts a "
                                     "job gets when workers die under it (at most the "
                                     "server's limits.max_attempts).")
    priority: int = Field(0, ge=PRIORITY_MIN, le=PRIORITY_MAX, description="preftune "
                          "extension: among your organization's queued jobs, higher runs "
                          "first (other organizations' jobs are not affected).")

    @field_validator("method", "hyperparameters", "config", mode="after")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        """JSON as Python reads it allows NaN and Infinity; no option means them."""
        found = _non_finite(value.model_dump() if isinstance(value, BaseModel) else value)
        if found is not None:
            raise ValueError(f"{found} is not a finite number")
        return value


def _non_finite(value: Any, where: str = "") -> str | None:
    """The path of the first NaN or infinity inside ``value``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "value"
    items: Any = (value.items() if isinstance(value, dict)
                  else enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


class JobError(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str
    message: str
    param: str | None = None


class Hyperparameters(BaseModel):
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None
    n_epochs: int | None = None


class JobPublic(BaseModel):
    """The ``fine_tuning.job`` object; ``attempt``, ``priority`` and ``config`` are preftune
    extensions."""

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: Hyperparameters
    model: str
    organization_id: str
    result_files: list[str]
    seed: int
    status: JobStatus
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    estimated_finish: None = None
    integrations: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, str] | None
    method: dict[str, Any]
    user_provided_suffix: str | None
    attempt: int = Field(description="preftune extension: runs started so far (a worker "
                         "lost midway resumes under the next).")
    priority: int = Field(0, description="preftune extension: its rank among your "
                          "organization's queued jobs (higher first).")
    config: dict[str, Any] = Field(description="preftune extension: the training options the "
                                   "job runs with.")

    @classmethod
    def from_row(cls, job: Job) -> JobPublic:
        kind = job.method.get("type", "dpo")
        resolved = (job.method.get(kind) or {}).get("hyperparameters") or {}
        return cls(
            id=job.id, created_at=job.created_at,
            error=JobError.model_validate(job.error) if job.error else None,
            fine_tuned_model=job.fine_tuned_model, finished_at=job.finished_at,
            hyperparameters=Hyperparameters.model_validate(
                {k: v for k, v in resolved.items() if k in Hyperparameters.model_fields}),
            model=job.model, organization_id=job.tenant_id,
            result_files=list(job.result_files or []), seed=job.seed, status=job.status,
            trained_tokens=job.trained_tokens, training_file=job.training_file,
            validation_file=job.validation_file, metadata=job.metadata_, method=job.method,
            user_provided_suffix=job.suffix, attempt=job.attempt,
            integrations=list(job.integrations or []), priority=job.priority or 0,
            # A job tuned from an ft: model has that model's directory as config["model"]:
            # a server path, which clients see as the name they asked for.
            config={**job.config, "model": job.model})


class JobDeleted(BaseModel):
    """What deleting a job answers (the shape of OpenAI's file and model deletions)."""

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    deleted: bool


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobPublic]
    has_more: bool


class EventPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    data: dict[str, Any] | None = Field(description="For metrics events, the run's "
                                        "metrics.jsonl row as written.")

    @classmethod
    def from_row(cls, row: JobEvent) -> EventPublic:
        return cls(id=event_id(row.id), created_at=row.created_at, level=row.level,
                   message=row.message, type=row.type, data=row.data)


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EventPublic]
    has_more: bool


class CheckpointMetrics(BaseModel):
    step: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None


class CheckpointPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: CheckpointMetrics

    @classmethod
    def from_row(cls, row: JobCheckpoint, job: Job) -> CheckpointPublic:
        model = (job.fine_tuned_model
                 or f"ft:{job.model}:{job.suffix or 'preftune'}:{job.id}")
        metrics = {name: row.metrics.get(name) for name in CheckpointMetrics.model_fields}
        metrics["step"] = row.metrics.get("step", row.step)
        return cls(id=row.id, created_at=row.created_at,
                   fine_tuned_model_checkpoint=f"{model}:ckpt-step-{row.step}",
                   fine_tuning_job_id=job.id, step_number=row.step,
                   metrics=CheckpointMetrics.model_validate(metrics))


class CheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CheckpointPublic]
    has_more: bool


# ---------------------------------------------------------- the browser pages' extensions


class ProblemPublic(BaseModel):
    """One problem of a file, located as precisely as its format allows."""

    model_config = ConfigDict(extra="allow")

    message: str
    text: str = Field(description="The problem as one line: file:line: record N: message.")
    file: str | None = Field(None, description="The file's name as uploaded.")
    record: int | None = Field(None, description="The record's index (0-based).")
    line: int | None = Field(None, description="The line in the file (1-based), for text "
                             "formats.")
    column: int | None = None
    field: str | None = Field(None, description="The field at fault, when one is.")
    expected: str | None = None
    found: str | None = None


class FileReport(BaseModel):
    """preftune extension: what ``preftune validate`` says of a file: its problems (every one
    up to ``problems_shown``; ``problem_count`` counts them all), warnings (duplicate and
    identical pairs), counts, and character lengths per text field."""

    model_config = ConfigDict(extra="allow")

    object: Literal["file.report"] = "file.report"
    file_id: str
    filename: str
    valid: bool
    format: str | None
    kind: str | None = Field(None, description="paired or unpaired, once the format is known.")
    records: int
    pairs: int
    examples: int = 0
    problem_count: int
    problems_shown: int
    problems: list[ProblemPublic]
    warnings: list[ProblemPublic]
    chars: dict[str, dict[str, float]] = Field(default_factory=dict, description="Per text "
                                               "field: min, mean, median, p95, max characters.")
    error: JobError | None = Field(None, description="Set when the file could not be read "
                                   "within the server's validation limits (memory, time).")


class Estimate(BaseModel):
    """preftune extension: what a job would plan (``preftune train --dry-run``)."""

    object: Literal["fine_tuning.job.estimate"] = "fine_tuning.job.estimate"
    plan: dict[str, Any] = Field(description="objective, data (pairs, truncation counts), "
                                 "model (parameters, trainable_parameters, layers, dtype), "
                                 "steps (per_epoch, total), memory_estimate_mb (weights, "
                                 "reference_copy, gradients_and_optimizer, activations, "
                                 "total).")
    examples_per_epoch: int
    within_limits: bool = Field(description="Whether the plan is within this server's limits "
                                "on examples, tokens and steps (checked again when the job's "
                                "files are validated).")
    limit_error: JobError | None = Field(None, description="The error the job would fail "
                                         "validation with, when over a limit.")


class MetricsPage(BaseModel):
    """preftune extension: rows of a job's metrics.jsonl."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    next_offset: int = Field(description="Pass as offset to read the rows written after "
                             "these.")
    next_eval_offset: int = Field(0, description="Pass as eval_offset to read a reinforcement "
                                  "job's evaluation rows written after these.")
    has_more: bool


class NumberOption(BaseModel):
    """A training option a form sets: its type, default and valid range (this server's limit
    included), and what it does."""

    name: str
    type: Literal["integer", "number", "boolean", "string"]
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = Field(False, description="The value must be above minimum.")
    exclusive_maximum: bool = Field(False, description="The value must be below maximum.")
    choices: list[str] | None = None
    nullable: bool = Field(False, description="May be left unset (null).")
    limit: str | None = Field(None, description="The server limit that sets maximum.")
    description: str = ""


class MethodOption(BaseModel):
    type: str
    description: str
    paper: str
    data: Literal["paired", "unpaired"]
    needs_reference: bool
    hyperparameters: list[NumberOption] = Field(description="What the loss reads, with this "
                                                "method's defaults.")


class PresetOption(BaseModel):
    name: str
    description: str
    risks: str
    values: dict[str, Any]
    default: bool


class ModelOptions(BaseModel):
    patterns: list[str] = Field(description="The tenant's quota.models: names or shell "
                                "patterns.")
    unrestricted: bool = Field(description="Any model name is allowed ('*').")
    allowed: list[str] = Field(description="Names the form offers: tiny, the aliases the "
                               "patterns allow, and patterns without wildcards.")
    aliases: dict[str, str] = Field(description="Every local alias and the hub id it stands "
                                    "for.")
    fine_tuned: list[str] = Field(description="The tenant's own fine-tuned models (ft:...), "
                                  "always allowed.")


class QuotaPublic(BaseModel):
    max_running_jobs: int
    max_queued_jobs: int
    max_files: int
    max_stored_mb: int
    integrations: list[str]
    usage: dict[str, int] = Field(description="What the tenant holds now: running and "
                                  "queued jobs, files and their stored_bytes.")


class JobOptions(BaseModel):
    """preftune extension: what a new-job form offers this tenant."""

    object: Literal["fine_tuning.options"] = "fine_tuning.options"
    models: ModelOptions
    methods: list[MethodOption]
    presets: list[PresetOption]
    hyperparameters: list[NumberOption] = Field(description="The general training options "
                                                "(TrainConfig fields), bounded by this "
                                                "server's limits.")
    limits: dict[str, Any] = Field(description="This server's limits on one job.")
    quota: QuotaPublic


# ------------------------------------------------------------------------------------ health


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str


# ----------------------------------------------------------------------------------- graders
# OpenAI's alpha grader endpoints. A grader is taken as a plain object here and checked by
# preftune.graders.validate, whose messages name the field (``grader.graders.fmt.operation``).

GraderObject = Annotated[dict[str, Any], Field(
    description="An OpenAI grader: string_check, text_similarity, score_model, multi or "
                "python (docs/graders.md).",
    examples=[{"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
               "reference": "{{item.answer}}", "operation": "eq"}])]


class GraderValidate(BaseModel):
    grader: GraderObject


class GraderValidated(BaseModel):
    grader: dict[str, Any] = Field(description="The grader as this server reads it: every "
                                   "field checked, unset optional fields left out.")


class GraderRun(BaseModel):
    grader: GraderObject
    model_sample: str = Field(description="The sample to grade: {{sample.output_text}}, and "
                              "{{sample.output_json}} when it is JSON.")
    item: Any = Field(None, description="The dataset row the sample answers: {{item.*}}.")
    reference_answer: Any = Field(None, description="Earlier versions of the API's reference "
                                  "answer: {{item.reference_answer}} where the item has none.")


class GraderRunErrors(BaseModel):
    """OpenAI's error flags: what kept the grader from scoring (all false when it scored)."""

    formula_parse_error: bool = False
    invalid_variable_error: bool = False
    model_grader_parse_error: bool = False
    model_grader_refusal_error: bool = False
    model_grader_server_error: bool = False
    model_grader_server_error_details: str | None = None
    other_error: bool = False
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    sample_parse_error: bool = False
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False
    messages: list[str] = Field(default_factory=list, description="preftune extension: each "
                                "error as a sentence naming the grader and what happened.")


class GraderRunMetadata(BaseModel):
    name: str
    type: str
    errors: GraderRunErrors
    execution_time: float = Field(description="Seconds the grader took.")
    scores: dict[str, float] = Field(description="A multi grader's sub-graders' scores, by "
                                     "name; empty for the other types.")
    token_usage: int | None = None
    sampled_model_name: str | None = Field(None, description="A score_model grader's model.")


class GraderRunResult(BaseModel):
    reward: float = Field(description="The grader's score; 0 when it could not score (see "
                          "metadata.errors).")
    metadata: GraderRunMetadata
    sub_rewards: dict[str, float]
    model_grader_token_usage_per_model: dict[str, Any] = Field(default_factory=dict)
