"""The job service's HTTP API: ``create_app`` assembles routers, limits and error handling.

The API is shaped like OpenAI's fine-tuning API, so the official SDK works against it with
``OpenAI(base_url="http://host:port/v1", api_key=KEY)``. Every error, whatever raised it,
is answered with OpenAI's body ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from preftune.errors import DataError, PreftuneError, UsageError
from preftune.service import retention
from preftune.service.auth import RateLimiter
from preftune.service.db import Database
from preftune.service.deps import ApiError, Service
from preftune.service.jobspec import InvalidRequest
from preftune.service.limits import ServiceConfig
from preftune.service.queue import Conflict, IdempotencyConflict, NotFound
from preftune.service.routes import files, graders, health, jobs
from preftune.service.routes import options as job_options
from preftune.service.store import Store, TooLarge
from preftune.service.validation import Busy

log = logging.getLogger(__name__)

UPLOAD_PATH = "/v1/files"
FORM_OVERHEAD = 64 * 2**10  # multipart boundaries and headers around an upload's bytes
OTHER_BODY_LIMIT = 2**20
RESTART_S = 5.0  # before a worker or validator loop that failed starts again


def create_app(db: Database, store: Store, *, config: ServiceConfig | None = None,
               max_upload_bytes: int = 512 * 2**20, rate_limit_per_minute: int = 600,
               embedded_workers: int = 0,
               worker_options: dict[str, Any] | None = None) -> FastAPI:
    """The API over ``db`` (already migrated) and ``store``, under the operator's ``config``
    (limits, quotas, the metrics token; defaults without one).

    While it is up (its lifespan), the app runs a ``Validator`` thread, so new jobs get their
    files checked even with no worker, a thread that applies ``config.retention``, and
    ``embedded_workers`` ``Worker`` threads given ``worker_options``; validator and workers
    get ``config`` too.
    """
    config = config or ServiceConfig()
    options = {**(worker_options or {}), "config": config}
    app = FastAPI(
        title="preftune", version=metadata.version("preftune"),
        description="Preference fine-tuning jobs, shaped like OpenAI's fine-tuning API.",
        lifespan=_lifespan(db, store, embedded_workers, options))
    app.state.service = Service(db, store, RateLimiter(rate_limit_per_minute),
                                rate_limit_per_minute, max_upload_bytes, config,
                                RateLimiter(config.failed_auth_per_minute))
    app.add_middleware(BodyLimit, upload_limit=max_upload_bytes + FORM_OVERHEAD)
    _handle_errors(app)
    app.include_router(health.router)
    app.include_router(files.router)
    app.include_router(jobs.router)
    app.include_router(job_options.router)
    app.state.grader_slots = graders.grader_slots(config.graders)
    app.include_router(graders.router)
    _mount_pages(app)
    return app


def _mount_pages(app: FastAPI) -> None:
    """The browser pages at ``/ui/`` (``web/static/service``) and the shared styles and
    scripts at ``/ui/static/``: files only; each page talks to the /v1 API with the key its
    user signs in with, so the pages need no access of their own."""
    from fastapi.staticfiles import StaticFiles

    from preftune.web import STATIC

    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.mount("/ui", StaticFiles(directory=STATIC / "service", html=True), name="ui")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/")


# ------------------------------------------------------------------------ embedded workers


def _lifespan(db: Database, store: Store, workers: int, options: dict[str, Any]
              ) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        threads = _start_loops(db, store, workers, options, stop)
        try:
            yield
        finally:
            stop.set()
            for thread in threads:  # a worker with a job stops it at a checkpoint first
                await asyncio.to_thread(thread.join)

    return lifespan


def _start_loops(db: Database, store: Store, workers: int, options: dict[str, Any],
                stop: threading.Event) -> list[threading.Thread]:
    # Imported here: the API itself does not need the worker's machinery.
    from preftune.service.worker import Validator, Worker

    validator_options = {k: v for k, v in options.items()
                         if k in ("lease_s", "poll_s", "config")}
    loops: list[tuple[str, Callable[[threading.Event], None]]] = [
        ("preftune-validator", Validator(db, store, **validator_options).run),
        ("preftune-retention", _retention(db, store, options["config"]))]
    loops += [(f"preftune-worker-{i}", Worker(db, store, **options).run) for i in range(workers)]
    threads = []
    for name, run in loops:
        thread = threading.Thread(target=_supervised, args=(name, run, stop), name=name,
                                  daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def _retention(db: Database, store: Store, config: ServiceConfig
               ) -> Callable[[threading.Event], None]:
    """A loop that deletes, every ``retention.sweep_every_s``, the jobs and files the
    retention policy lets go (``retention.sweep``)."""
    def run(stop: threading.Event) -> None:
        while not stop.is_set():
            counts = retention.sweep(db, store, config.retention)
            if any(counts.values()):
                log.info("retention: deleted %(jobs)d ended jobs and %(files)d files", counts)
            stop.wait(config.retention.sweep_every_s)

    return run


def _supervised(name: str, run: Callable[[threading.Event], None],
                stop: threading.Event) -> None:
    """Run a loop until ``stop``; start it again after an error (the database was away)."""
    while not stop.is_set():
        try:
            run(stop)
        except Exception:
            # A thread's exception goes nowhere by itself: log it, and keep the loop alive.
            log.exception("%s failed; starting it again in %.0f s", name, RESTART_S)
            stop.wait(RESTART_S)


# ------------------------------------------------------------------------------ body limit


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over the limit as they stream in, with 413.

    The limit is ``upload_limit`` for ``POST /v1/files`` and 1 MiB for anything else. A
    declared Content-Length over it is refused before a byte is read; otherwise the body is
    counted as it arrives, and reading stops once it is over. So an oversized upload is never
    spooled whole.
    """

    def __init__(self, app: ASGIApp, upload_limit: int) -> None:
        self.app = app
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and scope["path"].rstrip("/") == UPLOAD_PATH
        limit = self.upload_limit if upload else OTHER_BODY_LIMIT
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit, upload)
            return
        received = 0
        over = started = False

        async def counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge
            return message

        async def unless_over(message: Message) -> None:
            nonlocal started
            if over:  # the app's answer to a cut-off body (a parse error) gives way to 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, unless_over)
        except BodyTooLarge:
            pass
        if over and not started:
            await _refuse(send, limit, upload)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int, upload: bool) -> None:
    hint = (f"files up to {limit - FORM_OVERHEAD:,} bytes are accepted: split the data"
            if upload else "send less in one request")
    body = json.dumps(_body(f"the request body is larger than the limit of {limit:,} bytes"
                            f"\nhint: {hint}", "invalid_request_error",
                            code="request_too_large")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------------- errors


def _body(message: str, type: str, param: str | None = None,
          code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _text(error: PreftuneError) -> str:
    """The error as one message: what, the details, then what to do."""
    return "\n".join([error.message, *error.details, *(f"hint: {h}" for h in error.hints)])


def _handle_errors(app: FastAPI) -> None:
    """Answer every error with OpenAI's error body and the status that fits it."""
    # The project's errors: (type, status, param, code). A raised error gets the handler of
    # its nearest class here (Starlette walks its MRO), so InvalidRequest is not a UsageError.
    mapping: list[tuple[type[PreftuneError], int, str | None, str | None]] = [
        (NotFound, 404, None, "not_found"),
        (Conflict, 409, None, "conflict"),
        (IdempotencyConflict, 409, None, "idempotency_key_reused"),
        (TooLarge, 413, "file", "file_too_large"),
        (Busy, 503, None, "server_busy"),
        (InvalidRequest, 400, None, "invalid_value"),
        (DataError, 400, "file", "invalid_file"),
        (UsageError, 400, None, None),
    ]
    for kind, status, param, code in mapping:
        app.add_exception_handler(kind, _project_handler(status, param, code))

    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(_body(e.message, e.type, e.param, e.code), status_code=e.status,
                            headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = list(e.errors())
        lines, params = [], []
        for problem in problems:
            if problem["type"] == "json_invalid":
                return JSONResponse(_body(
                    f"the body is not valid JSON: {problem['ctx']['error']} at character "
                    f"{problem['loc'][-1]}", "invalid_request_error", code="invalid_json"),
                    status_code=422)
            where = ".".join(str(part) for part in problem["loc"][1:])
            params.append(where or None)
            message = str(problem["msg"]).removeprefix("Value error, ")
            lines.append(f"{where or problem['loc'][0]}: {message}")
        message = "invalid request: " + "\n".join(lines)
        return JSONResponse(_body(message, "invalid_request_error",
                                  params[0] if params else None, "invalid_request"),
                            status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse(_body(str(e.detail), "invalid_request_error"),
                            status_code=e.status_code, headers=e.headers)

    @app.exception_handler(PreftuneError)
    async def failed(request: Request, e: PreftuneError) -> JSONResponse:
        log.error("%s %s failed: %s", request.method, request.url.path, _text(e))
        return JSONResponse(_body(_text(e), "server_error"), status_code=500)

    @app.exception_handler(Exception)
    async def crashed(_: Request, e: Exception) -> JSONResponse:
        # Starlette logs the exception and its traceback after this answer is sent.
        return JSONResponse(_body("the server failed on this request; its log has the "
                                  f"details ({type(e).__name__})", "server_error"),
                            status_code=500)


def _project_handler(status: int, param: str | None, code: str | None
                     ) -> Callable[[Request, Exception], Any]:
    async def handle(_: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, PreftuneError)
        # An InvalidRequest names the field, and says why it is refused.
        named = e.param if isinstance(e, InvalidRequest) else param
        coded = e.code if isinstance(e, InvalidRequest) else code
        return JSONResponse(_body(_text(e), "invalid_request_error", named, coded),
                            status_code=status)

    return handle
