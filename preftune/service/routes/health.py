"""``/healthz`` and ``/metrics``: for load balancers and Prometheus, without a key."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from preftune.service import queue
from preftune.service.deps import ServiceDep
from preftune.service.schemas import Health

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

LIVE_WITHIN_S = 60.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


def _down(error: SQLAlchemyError) -> str:
    # The body is public: name the failure's kind, never the database URL or its message.
    log.warning("database check failed: %s", error)
    return f"unreachable ({type(error).__name__})"


@router.get("/healthz", response_model=Health,
            responses={503: {"model": Health, "description": "The database is unreachable"}})
def healthz(service: ServiceDep) -> Health | JSONResponse:
    """Whether the server can reach its database (one trivial query)."""
    try:
        with service.db.session() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        return JSONResponse(Health(status="unavailable", database=_down(e)).model_dump(),
                            status_code=503)
    return Health(status="ok", database="ok")


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format"},
                       503: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "The database is unreachable"}})
def metrics(service: ServiceDep) -> PlainTextResponse:
    """Queue depth, jobs by status and live workers, in Prometheus' text format."""
    try:
        counts = queue.queue_counts(service.db)
        workers = queue.live_workers(service.db, LIVE_WITHIN_S)
    except SQLAlchemyError as e:
        return PlainTextResponse(f"# database {_down(e)}\n", status_code=503,
                                 media_type=PROMETHEUS_TEXT)
    lines = [
        "# HELP preftune_queue_depth Jobs waiting for a worker: queued or validating files.",
        "# TYPE preftune_queue_depth gauge",
        f"preftune_queue_depth {counts['queued'] + counts['validating_files']}",
        "# HELP preftune_jobs Jobs by status, over all organizations.",
        "# TYPE preftune_jobs gauge",
        *(f'preftune_jobs{{status="{status}"}} {n}' for status, n in counts.items()),
        f"# HELP preftune_workers Workers with a heartbeat in the last {LIVE_WITHIN_S:.0f} s.",
        "# TYPE preftune_workers gauge",
        f"preftune_workers {workers}",
    ]
    return PlainTextResponse("\n".join(lines) + "\n", media_type=PROMETHEUS_TEXT)
