"""``/healthz`` for load balancers, without a key; ``/metrics`` for the operator's
Prometheus, with the metrics token (it counts every tenant's jobs, so no tenant key opens it).
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from preftune import settings
from preftune.service import queue
from preftune.service.deps import ApiError, ServiceDep, check_address, failed_check
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


metrics_bearer = HTTPBearer(auto_error=False, scheme_name="MetricsToken",
                            description="The operator's metrics token (metrics_token in the "
                            "service config, or PREFTUNE_METRICS_TOKEN); not an API key.")
TOKEN_HINT = ("the operator sets one with metrics_token in the service config, "
              "--metrics-token or PREFTUNE_METRICS_TOKEN, and gives it to Prometheus as its "
              "bearer token")


def check_metrics_token(
    request: Request, service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(metrics_bearer)],
) -> None:
    """401 unless the request carries the metrics token (compared in constant time); a
    wrong one counts as a failed key check of the caller's address, as a wrong key does."""
    check_address(request, service)
    token = service.config.metrics_token or settings.metrics_token()
    if token is None:
        raise ApiError(401, f"/metrics is closed: this server has no metrics token\nhint: "
                       f"{TOKEN_HINT}", type="authentication_error",
                       code="no_metrics_token")
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        if credentials is not None:  # a guess; no header at all is not one
            failed_check(request, service)
        raise ApiError(401, "/metrics needs the header 'Authorization: Bearer <metrics "
                       f"token>'\nhint: {TOKEN_HINT}", type="authentication_error",
                       code="invalid_metrics_token")


@router.get("/metrics", response_class=PlainTextResponse,
            dependencies=[Depends(check_metrics_token)],
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format"},
                       401: {"description": "No metrics token, or a wrong one"},
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
