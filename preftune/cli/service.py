"""``preftune serve``, ``worker``, ``pipeline``, ``keys`` and ``db``: running the job service."""

from __future__ import annotations

import signal
import threading
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from preftune import settings
from preftune.cli.common import err, out
from preftune.cli.options import config_flags
from preftune.cli.train import gather_values
from preftune.config import TrainConfig, read_yaml
from preftune.service.limits import (
    Graders,
    Limits,
    Quota,
    Reinforcement,
    Retention,
    ServiceConfig,
)
from preftune.service.limits import load as load_service_config

DatabaseUrl = Annotated[str | None, typer.Option(
    "--database-url", help="sqlite:///PATH or postgresql://USER@HOST/DB (default: "
    "PREFTUNE_DATABASE_URL, else SQLite in the service directory).")]
ServiceDir = Annotated[Path | None, typer.Option(
    "--service-dir", help="Where uploads and job directories live (default: "
    "PREFTUNE_SERVICE_DIR or ~/.local/share/preftune). Workers on several machines need "
    "the same directory (a shared file system).")]
Gpus = Annotated[int, typer.Option(help="GPUs per job: above 1, jobs run under accelerate "
                                        "launch with that many processes.")]
LeaseS = Annotated[float, typer.Option(help="Seconds a worker's claim lasts without a "
                                            "heartbeat.")]
GraceS = Annotated[float, typer.Option(help="Seconds a stopping job gets to checkpoint "
                                            "before SIGKILL.")]

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.",
                       no_args_is_help=True)
db_app = typer.Typer(help="The service database: migrate, show its revision.",
                     no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("worker")(worker_cmd)
    app.command("pipeline", context_settings={"allow_interspersed_args": True})(pipeline_cmd)
    app.add_typer(keys_app, name="keys")
    app.add_typer(db_app, name="db")


def open_service(database_url: str | None, service_dir: Path | None) -> tuple[Any, Any]:
    """The migrated database and the file store the options (or environment) name."""
    from preftune.service.db import Database
    from preftune.service.store import Store

    root = service_dir or settings.service_dir()
    db = Database(database_url or settings.database_url(root))
    db.migrate()
    return db, Store(root)


ServiceConfigFile = Annotated[Path | None, typer.Option(
    "--config", "-c", help="The service config (YAML): limits, quotas, per-tenant overrides, "
    "retention, metrics token; the flags below override it. Give every process of one "
    "service the same file.")]
# Service-config fields without a flag: sections (their fields are the flags), per-tenant
# overrides and integration credentials (only in the file).
_NOT_FLAGS = ("limits", "quota", "tenants", "retention", "graders", "reinforcement",
              "integrations")


def service_config(path: Path | None, flags: dict[str, Any] | None) -> ServiceConfig:
    """The config file with the flags over it; list flags are comma lists (--models a,b)."""
    sections = (Limits, Quota, Retention, Graders, Reinforcement, ServiceConfig)
    overrides: dict[str, Any] = {}
    for name, value in (flags or {}).items():
        model = next(m for m in sections if name in m.model_fields)
        listed = typing.get_origin(model.model_fields[name].annotation) is list
        overrides[name] = ([part.strip() for part in value.split(",") if part.strip()]
                           if listed and isinstance(value, str) else value)
    return load_service_config(path, overrides)


@config_flags(Limits, Quota, Retention, Graders, Reinforcement, ServiceConfig,
              skip=_NOT_FLAGS)
def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the API to "
                                           "the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Workers inside the server process (0: API "
                                              "only; run `preftune worker` elsewhere).")] = 1,
    database_url: DatabaseUrl = None,
    service_dir: ServiceDir = None,
    config: ServiceConfigFile = None,
    max_upload_mb: Annotated[int, typer.Option(help="Largest file upload, in MiB.")] = 512,
    rate_limit: Annotated[int, typer.Option(help="Requests per minute per API key (0: no "
                                                 "limit).")] = 600,
    gpus: Gpus = 0,
    lease_s: LeaseS = 30.0,
    grace_s: GraceS = 30.0,
    flags: dict[str, Any] | None = None,
) -> None:
    """Serve the fine-tuning API (OpenAI-compatible) with embedded workers."""
    import uvicorn

    from preftune.service.app import create_app

    options = service_config(config, flags)  # a bad file fails before anything starts
    db, store = open_service(database_url, service_dir)
    app = create_app(db, store, config=options, max_upload_bytes=max_upload_mb * 2**20,
                     rate_limit_per_minute=rate_limit, embedded_workers=workers,
                     worker_options={"lease_s": lease_s, "grace_s": grace_s, "gpus": gpus})
    out.print(f"preftune API on http://{host}:{port}/v1 ({workers} embedded worker"
              f"{'s' if workers != 1 else ''}; database {escape(_safe_url(db.url))}; files "
              f"in {escape(str(store.root))}"
              + (f"; config {escape(str(config))}" if config else "") + ")")
    if options.metrics_token is None and settings.metrics_token() is None:
        err.print("note: /metrics answers 401 until a metrics token is set (metrics_token "
                  "in --config, --metrics-token or PREFTUNE_METRICS_TOKEN)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@config_flags(Limits, Quota, Retention, Graders, Reinforcement, ServiceConfig,
              skip=_NOT_FLAGS)
def worker_cmd(
    database_url: DatabaseUrl = None,
    service_dir: ServiceDir = None,
    config: ServiceConfigFile = None,
    gpus: Gpus = 0,
    lease_s: LeaseS = 30.0,
    grace_s: GraceS = 30.0,
    poll_s: Annotated[float, typer.Option(help="Seconds between looks at an empty "
                                               "queue.")] = 1.0,
    max_jobs: Annotated[int | None, typer.Option(help="Stop after running N jobs.")] = None,
    flags: dict[str, Any] | None = None,
) -> None:
    """Run jobs from the queue until stopped (Ctrl-C or SIGTERM: the running job is
    checkpointed and queued again). Give it the service config the server has: it enforces
    run time limits, running-job caps and the training environment."""
    from preftune.service.worker import Worker

    options = service_config(config, flags)
    db, store = open_service(database_url, service_dir)
    worker = Worker(db, store, lease_s=lease_s, poll_s=poll_s, grace_s=grace_s, gpus=gpus,
                    echo=lambda line: out.print(escape(line)), config=options)
    stop = threading.Event()
    with StopOnSignals(stop):
        out.print(f"worker {worker.worker_id}: database {escape(_safe_url(db.url))}")
        worker.run(stop, max_jobs=max_jobs)


@config_flags(TrainConfig, skip=("output_dir",))
def pipeline_cmd(
    overrides: Annotated[list[str] | None, typer.Argument(
        help="More options as key=value (any TrainConfig field or alias).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c",
                                                help="A YAML file of options.")] = None,
    service_dir: Annotated[Path | None, typer.Option(
        "--service-dir", help="Where the embedded database, files and job directories go "
        "(default: the service directory's pipeline/).")] = None,
    flags: dict[str, Any] | None = None,
) -> None:
    """Run one job through the service path (files, validation, queue, worker, tracking) in
    this process, with an embedded database and no HTTP. Exits as `preftune train` would."""
    from preftune.errors import UsageError
    from preftune.service.pipeline import run_pipeline

    values = gather_values(read_yaml(config) if config else {}, flags, overrides)
    data = values.pop("dataset", None) or values.pop("train_file", None)
    if data is None:
        raise UsageError("no training data", ["pass --dataset PATH"])
    evaluation = values.pop("eval_dataset", None)
    for key in ("output_dir", "log_path"):
        if values.pop(key, None) is not None:
            err.print(f"[yellow]warning:[/] {key} is ignored: the job's run directory is in "
                      "the service directory")
    TrainConfig.build({**values, "dataset": str(data)})  # a bad option fails here, as in train
    root = service_dir or settings.service_dir() / "pipeline"
    stop = threading.Event()
    with StopOnSignals(stop):
        result = run_pipeline(root, Path(data), values,
                              Path(evaluation) if evaluation else None, stop,
                              echo=lambda line: out.print(escape(line)))
    job = result.job
    if job.error:
        err.print(f"[bold red]error:[/] {escape(str(job.error['message']))}")
    out.print(f"job {job.id}: {job.status} (exit code {result.exit_code})")
    out.print(f"run directory: {escape(str(result.run_dir))}")
    raise typer.Exit(result.exit_code)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key (who or what uses it).")],
    tenant: Annotated[str | None, typer.Option(help="The tenant that owns what the key "
                                                    "creates (default: the key's name).")]
    = None,
    database_url: DatabaseUrl = None,
    service_dir: ServiceDir = None,
) -> None:
    """Create an API key and print it once: only its hash is stored."""
    from preftune.service.auth import create_key

    db, _ = open_service(database_url, service_dir)
    key, secret = create_key(db, name, tenant)
    err.print(f"key {key.id} for tenant {escape(tenant or name)}; it is shown only now:")
    print(secret)


@keys_app.command("list")
def keys_list(database_url: DatabaseUrl = None, service_dir: ServiceDir = None) -> None:
    """Every key: id, name, tenant, prefix, created, revoked."""
    from preftune.service.auth import list_keys

    db, _ = open_service(database_url, service_dir)
    table = Table(box=None, pad_edge=False)
    for column in ("id", "name", "tenant", "starts with", "created", "revoked"):
        table.add_column(column, no_wrap=column in ("id", "starts with"))
    for key, tenant in list_keys(db):
        table.add_row(key.id, escape(key.name), escape(tenant), key.prefix + "...",
                      _date(key.created_at), _date(key.revoked_at) if key.revoked_at else "")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key-...).")],
                database_url: DatabaseUrl = None, service_dir: ServiceDir = None) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from preftune.service.auth import revoke_key

    db, _ = open_service(database_url, service_dir)
    revoke_key(db, key_id)
    out.print(f"revoked {key_id}")


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None, service_dir: ServiceDir = None) -> None:
    """Apply every pending migration (serve and worker do this when they start)."""
    from preftune.service.migrate import current

    db, _ = open_service(database_url, service_dir)
    out.print(f"database at revision {current(db.engine)}")


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None, service_dir: ServiceDir = None) -> None:
    """Show the database's revision and the newest one this version knows."""
    from preftune.service.db import Database
    from preftune.service.migrate import current, head

    root = service_dir or settings.service_dir()
    db = Database(database_url or settings.database_url(root))
    out.print(f"database: {current(db.engine) or 'empty'}; newest: {head()}")


class StopOnSignals:
    """SIGINT and SIGTERM set ``stop`` (the worker then checkpoints and requeues its job)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        err.print("stopping: the running job checkpoints and goes back to the queue "
                  "(again to stop at once)")
        self.stop.set()

    def __enter__(self) -> StopOnSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _safe_url(url: str) -> str:
    """The URL without a password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _date(ts: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")
